"""
The client a command runs with, checked up front, and problems said in the command line's words.

The library's messages name its keyword arguments (``auth_id=``); a person at
a terminal sets environment variables and options, so these name those.
``--dry-run`` runs the same checks, so it refuses what the real run would.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .._checks import check_identifier
from .._client import AsyncVobiz
from .._config import DEFAULT_MAX_CONNECTIONS, Settings, check_base_url
from .._exceptions import ConfigurationError, InvalidTargetError
from .._network import CABundle, ssl_context
from .._retry import RetryPolicy
from .options import Options

__all__ = ["ConfigurationProblem", "client_factory"]


class ConfigurationProblem(Exception):
    """
    The real run could not start as configured; the message says what to set.
    """


def client_factory(options: Options) -> Callable[[], AsyncVobiz]:
    """
    Check credentials and base URL as the real run needs them; a maker of its client.

    Raises ConfigurationProblem naming the variable or option to fix. Nothing
    is sent and nothing opened: the client is made when the run starts.
    """
    auth_id = os.environ.get("VOBIZ_AUTH_ID", "")
    auth_token = os.environ.get("VOBIZ_AUTH_TOKEN", "")
    missing = [
        name
        for name, value in (("VOBIZ_AUTH_ID", auth_id), ("VOBIZ_AUTH_TOKEN", auth_token))
        if not value
    ]
    if missing:
        raise ConfigurationProblem(
            f"missing credentials: set the environment variable{'s' if len(missing) > 1 else ''} "
            f"{' and '.join(missing)} (never an option: they would stay in shell history)"
        )
    try:
        check_identifier("VOBIZ_AUTH_ID", auth_id)
    except InvalidTargetError as exc:
        raise ConfigurationProblem(str(exc)) from None
    if not (auth_token.isascii() and auth_token.isprintable()):
        # Never echo the value: it is the secret.
        raise ConfigurationProblem(
            "VOBIZ_AUTH_TOKEN must be printable ASCII (no spaces or line breaks around it?)"
        )
    source = "--base-url" if options.base_url else "VOBIZ_BASE_URL"
    base_url = options.base_url or os.environ.get("VOBIZ_BASE_URL")
    try:
        check_base_url(base_url)
    except ConfigurationError as exc:
        message = str(exc).removeprefix("base_url ")
        raise ConfigurationProblem(f"the base URL ({source}) is refused: {message}") from None
    retry = RetryPolicy(max_attempts=options.max_attempts)
    verify = str(options.ca_bundle) if options.ca_bundle is not None else True
    try:
        # Everything else the client checks (the proxy, the CAs), without opening anything.
        settings = Settings.resolve(
            auth_id,
            auth_token,
            base_url=base_url,
            timeout=options.timeout,
            max_connections=DEFAULT_MAX_CONNECTIONS,
            retry=retry,
            proxy=options.proxy,
            verify=verify,
        )
        trust = settings.network.trust if settings.network is not None else None
        given = options.ca_bundle is not None  # else SSL_CERT_FILE/DIR: only https reads them
        if isinstance(trust, CABundle) and (given or settings.base_url.startswith("https:")):
            # Loaded now (the client keeps it for its first request), so that a
            # file that is not a CA bundle is said before anything is sent,
            # dry run included, rather than as every target's failure.
            ssl_context(trust)
    except ConfigurationError as exc:
        message = str(exc).replace("proxy=", "--proxy ").replace("verify=", "--ca-bundle ")
        raise ConfigurationProblem(message) from None

    def make_client() -> AsyncVobiz:
        return AsyncVobiz(
            base_url=base_url,
            timeout=options.timeout,
            retry=retry,
            proxy=options.proxy,
            verify=verify,
        )

    return make_client
