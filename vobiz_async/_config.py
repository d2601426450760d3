"""
The client's settings, resolved from arguments and environment and checked in one step.
"""

from __future__ import annotations

import math
import os
import platform

import attrs
import httpx

from ._checks import check_identifier, is_loopback
from ._exceptions import ConfigurationError, InvalidTargetError
from ._network import Network
from ._retry import RetryPolicy
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "CallLimits",
    "Settings",
    "check_retry",
    "check_timeout",
]

DEFAULT_BASE_URL = "https://api.vobiz.ai/api/v1"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 100

USER_AGENT = (
    f"vobiz-async/{__version__} Python/{platform.python_version()} httpx/{httpx.__version__}"
)


@attrs.frozen
class Settings:
    """
    Everything a client was configured with, valid by construction (see ``resolve``).
    """

    auth_id: str
    auth_token: str = attrs.field(repr=False)
    base_url: str
    timeout: float
    max_connections: int
    retry: RetryPolicy
    #: How the default transport connects; None when http_client= or transport= replaces it.
    network: Network | None = None

    @classmethod
    def resolve(
        cls,
        auth_id: str | None,
        auth_token: str | None,
        *,
        base_url: str | None,
        timeout: float,
        max_connections: int,
        retry: RetryPolicy | None,
        proxy: object = None,
        verify: object = True,
        trust_env: object = True,
        default_transport: bool = True,
    ) -> Settings:
        """
        Fill in from the environment and check every value; ConfigurationError if any is bad.

        ``VOBIZ_*`` for the credentials and base URL; with ``trust_env`` (and
        the default transport) the proxy and CA variables too. ``proxy``,
        ``verify`` and ``trust_env`` configure the default transport, so with
        ``default_transport=False`` (an ``http_client=`` or ``transport=`` of
        the caller's) passing any of them is an error rather than ignored.
        """
        auth_id = auth_id if auth_id is not None else os.environ.get("VOBIZ_AUTH_ID")
        auth_token = auth_token if auth_token is not None else os.environ.get("VOBIZ_AUTH_TOKEN")
        if not auth_id or not auth_token:
            missing = [
                name
                for name, value in (("VOBIZ_AUTH_ID", auth_id), ("VOBIZ_AUTH_TOKEN", auth_token))
                if not value
            ]
            raise ConfigurationError(
                f"missing Vobiz credentials: set {' and '.join(missing)} "
                "or pass auth_id= and auth_token="
            )
        try:
            check_identifier("auth_id", auth_id)
        except InvalidTargetError as exc:
            raise ConfigurationError(str(exc)) from None
        if not (isinstance(auth_token, str) and auth_token.isascii() and auth_token.isprintable()):
            # Never echo the value: it is the secret.
            raise ConfigurationError("auth_token must be a non-empty printable ASCII str")
        checked_timeout = check_timeout(timeout)
        if isinstance(max_connections, bool) or not (
            isinstance(max_connections, int) and max_connections > 0
        ):
            raise ConfigurationError(f"max_connections must be an int > 0, got {max_connections!r}")
        checked_retry = check_retry(retry)
        base_url = check_base_url(base_url or os.environ.get("VOBIZ_BASE_URL"))
        network: Network | None = None
        if default_transport:
            network = Network.resolve(base_url, proxy=proxy, verify=verify, trust_env=trust_env)
        else:
            given = [
                name
                for name, value, default in (
                    ("proxy", proxy, None),
                    ("verify", verify, True),
                    ("trust_env", trust_env, True),
                )
                if value is not default
            ]
            if given:
                raise ConfigurationError(
                    f"{', '.join(given)} configure the default transport; with http_client= "
                    "or transport= configure your own client or transport instead"
                )
        return cls(
            auth_id=auth_id,
            auth_token=auth_token,
            base_url=base_url,
            timeout=checked_timeout,
            max_connections=max_connections,
            retry=checked_retry if checked_retry is not None else RetryPolicy(),
            network=network,
        )

    @property
    def limits(self) -> CallLimits:
        """
        The timeout and retry policy of every call that does not override them.
        """
        return CallLimits(self.timeout, self.retry)

    def limits_for(self, *, timeout: float | None, retry: RetryPolicy | None) -> CallLimits:
        """
        One call's limits: what it overrides, checked as the constructor checks it; the rest ours.

        ``None`` means "the client's". ConfigurationError for a bad value.
        """
        checked_timeout = check_timeout(timeout) if timeout is not None else self.timeout
        checked_retry = check_retry(retry)
        return CallLimits(
            checked_timeout, checked_retry if checked_retry is not None else self.retry
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """
        What must appear in no message, log or repr: the auth token, and the proxy's password.
        """
        proxy = self.network.proxy if self.network is not None else None
        if proxy is not None and proxy.password:
            return (self.auth_token, proxy.password)
        return (self.auth_token,)

    @property
    def account_url(self) -> str:
        """
        The URL every route's path is relative to, with a trailing slash.
        """
        return f"{self.base_url}/Account/{self.auth_id}/"

    def headers(self) -> httpx.Headers:
        """
        The headers of every request: auth, content negotiation, who is calling.
        """
        return httpx.Headers(
            {
                "X-Auth-ID": self.auth_id,
                "X-Auth-Token": self.auth_token,
                "Accept": "application/json",
                # Answers are tiny: compression would only let a hostile peer
                # send a small bomb that inflates in our memory.
                "Accept-Encoding": "identity",
                "User-Agent": USER_AGENT,
            }
        )


@attrs.frozen
class CallLimits:
    """
    How long one call may take: seconds per attempt, and the retry policy around the attempts.
    """

    timeout: float
    retry: RetryPolicy


def check_timeout(timeout: object) -> float:
    """
    Seconds per attempt, as a float; ConfigurationError unless a number > 0.
    """
    if isinstance(timeout, bool) or not (
        isinstance(timeout, int | float) and 0 < timeout < math.inf
    ):
        # inf and nan too: aiohttp cannot arm a timer for them, and no request
        # should wait for ever (RetryPolicy(deadline=None) is the unbounded choice).
        raise ConfigurationError(f"timeout must be a finite number > 0 seconds, got {timeout!r}")
    return float(timeout)


def check_retry(retry: object) -> RetryPolicy | None:
    """
    The policy as given (None stays None); ConfigurationError for anything but a RetryPolicy.
    """
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
    return retry


def check_base_url(value: str | None) -> str:
    """
    Refuse any base URL that would send the token in clear text off this machine.
    """
    raw = (value or DEFAULT_BASE_URL).rstrip("/")
    if not (raw.isascii() and raw.isprintable()) or " " in raw:
        raise ConfigurationError(f"base_url must be printable ASCII without spaces: {raw!r}")
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"base_url is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host: {raw!r}")
    if url.userinfo:
        # It would go out as Basic auth and show in every repr and message.
        raise ConfigurationError(
            "base_url must not hold a user name or password (user:password@host): "
            "Vobiz authenticates with VOBIZ_AUTH_ID and VOBIZ_AUTH_TOKEN"
        )
    if url.query or url.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment: {raw!r}")
    if url.scheme == "http" and not is_loopback(url.host):
        raise ConfigurationError(
            f"base_url {raw!r} is plain http to a non-loopback host; the auth token "
            "would travel in clear text. Use https (http is allowed for loopback only)."
        )
    return raw
