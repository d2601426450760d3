"""
How the default transport reaches the API: through which proxy, trusting which CAs.

Resolved once, when the client is built, from ``proxy=``, ``verify=`` and
``trust_env=`` and, with ``trust_env``, from the environment as httpx reads
it: ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (either case), then
``SSL_CERT_FILE`` or ``SSL_CERT_DIR``. Nothing is read from disk then:
the SSL context is built when the first request needs it, once per process
for each set of CAs, because loading a CA bundle costs tens of milliseconds.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import ssl
import urllib.request
from typing import TypeAlias

import attrs
import certifi
import httpx

from ._exceptions import ConfigurationError

__all__ = [
    "CABundle",
    "Network",
    "ProxyRoute",
    "ProxyTypes",
    "Trust",
    "TrustStore",
    "VerifyTypes",
    "cached_ssl_context",
    "environment_proxy",
    "ssl_context",
]

#: What ``verify=`` takes: True (the default CAs), a CA bundle's path, or an SSL context.
VerifyTypes: TypeAlias = bool | str | os.PathLike[str] | ssl.SSLContext
#: What ``proxy=`` takes, as httpx's ``proxy=`` does.
ProxyTypes: TypeAlias = str | httpx.URL | httpx.Proxy

_SCHEMES = ("http", "https")


class TrustStore(enum.Enum):
    """
    The CAs trusted when nothing else is said: certifi's Mozilla bundle, as httpx trusts.
    """

    CERTIFI = "certifi"


@attrs.frozen
class CABundle:
    """
    CA certificates from a PEM file, or from a directory hashed as OpenSSL's ``c_rehash`` does.
    """

    path: str
    is_dir: bool
    #: Where the path came from, for messages: ``verify=``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``.
    origin: str = attrs.field(eq=False)

    def describe(self) -> str:
        """
        ``SSL_CERT_FILE=/etc/ca.pem``: where, and which path.
        """
        return f"{self.origin.rstrip('=')}={self.path}"


#: Whom the default transport trusts: a trust store, a CA bundle, or the caller's own context.
Trust: TypeAlias = TrustStore | CABundle | ssl.SSLContext


@attrs.frozen
class ProxyRoute:
    """
    The proxy every request tunnels through. Its password is in no repr or message.
    """

    #: ``scheme://host:port``, without the user name and password.
    url: str
    username: str | None
    password: str | None = attrs.field(repr=False)
    #: Where it came from, for messages: ``proxy=`` or the environment variable's name.
    origin: str

    def describe(self) -> str:
        """
        ``http://proxy:3128 (from HTTPS_PROXY)``: never the password.
        """
        return f"{self.url} (from {self.origin})"


@attrs.frozen
class Network:
    """
    How the default transport connects: the proxy (None: directly) and the CAs it trusts.
    """

    proxy: ProxyRoute | None
    trust: Trust

    @classmethod
    def resolve(
        cls,
        base_url: str,
        *,
        proxy: object,
        verify: object,
        trust_env: object,
    ) -> Network:
        """
        Check the arguments and read the environment; ConfigurationError for anything wrong.

        A plain-http base URL (allowed for loopback only) is never sent
        through a proxy: the proxy would see the auth token in clear text,
        and a loopback server is on this machine anyway. So the environment's
        proxy is not used for it, and ``proxy=`` with it is an error.
        """
        if not isinstance(trust_env, bool):
            raise ConfigurationError(f"trust_env must be a bool, not {type(trust_env).__name__}")
        url = httpx.URL(base_url)
        route: ProxyRoute | None = None
        if proxy is not None:
            route = proxy_route(proxy, "proxy=")
            if url.scheme == "http":
                raise ConfigurationError(
                    f"proxy= with the plain-http base_url {base_url!r}: the proxy would see "
                    "the auth token in clear text. Use an https base_url through a proxy; "
                    "a loopback server needs none."
                )
        elif trust_env and url.scheme == "https":
            found = environment_proxy(url)
            if found is not None:
                route = proxy_route(*found)
        return cls(proxy=route, trust=_trust(verify, trust_env=trust_env))


def proxy_route(value: object, origin: str) -> ProxyRoute:
    """
    A checked proxy from a URL (``http://user:password@host:port``) or an ``httpx.Proxy``.
    """
    where = origin.rstrip("=")
    if isinstance(value, httpx.Proxy):
        if value.headers or value.ssl_context is not None:
            raise ConfigurationError(
                f"{where}: the default transport cannot send an httpx.Proxy's headers or "
                "use its ssl_context; pass http_client=httpx.AsyncClient(proxy=...) for those"
            )
        url, auth = value.url, value.auth
    elif isinstance(value, str | httpx.URL):
        try:
            parsed = httpx.Proxy(value)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise ConfigurationError(
                f"{where} is not a valid proxy URL: {_shown(value)}; expected "
                "http://host:port or http://user:password@host:port"
            ) from None
        url, auth = parsed.url, parsed.auth
    else:
        raise ConfigurationError(
            f"{where} must be a URL str or an httpx.Proxy, not {type(value).__name__}"
        )
    if url.scheme.startswith("socks"):
        raise ConfigurationError(
            f"{where}: SOCKS proxies ({_shown(url)}) are not supported by the default "
            "transport (aiohttp); use an http:// proxy, or pass "
            "http_client=httpx.AsyncClient(proxy=...) with httpx[socks] installed"
        )
    if url.scheme not in _SCHEMES or not url.host:
        raise ConfigurationError(
            f"{where} must be an http:// or https:// URL with a host, not {_shown(url)}"
        )
    return ProxyRoute(
        url=str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/"),
        username=auth[0] if auth else None,
        password=auth[1] if auth else None,
        origin=origin,
    )


def _shown(value: str | httpx.URL) -> str:
    """
    A proxy URL as it may be shown: scheme, host and port, never the user or password.
    """
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        return "(not shown: it cannot be parsed, and may hold a password)"
    port = f":{url.port}" if url.port is not None else ""
    return repr(f"{url.scheme}://{url.host}{port}")


def environment_proxy(url: httpx.URL) -> tuple[str, str] | None:
    """
    ``(proxy URL, variable)`` for ``url`` from the environment, as httpx picks it; None for none.

    ``<scheme>_PROXY`` before ``ALL_PROXY``; any ``NO_PROXY`` entry that
    matches the host (httpx's rules, after curl's) means no proxy. On macOS
    and Windows the system's proxy settings count too, as urllib reads them.
    """
    found = urllib.request.getproxies()
    if any(_matches(pattern, url) for pattern in _no_proxy_patterns(found.get("no", ""))):
        return None
    for scheme in (url.scheme, "all"):
        value = found.get(scheme)
        if value:
            return (value if "://" in value else f"http://{value}"), f"{scheme.upper()}_PROXY"
    return None


def _no_proxy_patterns(value: str) -> list[str]:
    """
    The URL pattern httpx makes of each ``NO_PROXY`` entry; ``all://`` for ``*``.
    """
    patterns = []
    for entry in (part.strip() for part in value.split(",")):
        if entry == "*":
            patterns.append("all://")
        elif "://" in entry:
            patterns.append(entry)
        elif _is_ip(entry, ipaddress.IPv4Address):
            patterns.append(f"all://{entry}")
        elif _is_ip(entry, ipaddress.IPv6Address):
            patterns.append(f"all://[{entry}]")
        elif entry.lower() == "localhost":
            patterns.append(f"all://{entry}")
        elif entry:
            # "example.com" covers it and its subdomains; ".example.com" only the subdomains.
            patterns.append(f"all://*{entry}")
    return patterns


def _is_ip(entry: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(entry.split("/")[0])
    except ValueError:
        return False
    return True


def _matches(pattern: str, url: httpx.URL) -> bool:
    """
    Whether ``url`` matches a ``NO_PROXY`` pattern, as httpx's URLPattern decides.
    """
    try:
        parsed = httpx.URL(pattern)
    except httpx.InvalidURL:
        return False  # an entry httpx could not read either: it bypasses nothing
    if parsed.scheme not in ("all", url.scheme):
        return False
    host = parsed.host
    if host and host != "*":
        if host.startswith("*."):
            regex = rf"^.+\.{re.escape(host[2:])}$"
        elif host.startswith("*"):
            regex = rf"^(.+\.)?{re.escape(host[1:])}$"
        else:
            regex = rf"^{re.escape(host)}$"
        if not re.match(regex, url.host):
            return False
    return parsed.port is None or parsed.port == url.port


def _trust(verify: object, *, trust_env: bool) -> Trust:
    if verify is True:
        if trust_env:
            for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
                path = os.environ.get(variable)
                if path:
                    return _bundle(path, variable)
        return TrustStore.CERTIFI
    if verify is False:
        raise ConfigurationError(
            "verify=False is not allowed: anyone who can intercept the connection would "
            "get the auth token. For a private CA, pass its certificate: "
            "verify='/path/to/ca.pem', or an ssl.SSLContext that trusts it"
        )
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str | os.PathLike):
        path = os.fspath(verify)
        if isinstance(path, str):
            return _bundle(path, "verify=")
    raise ConfigurationError(
        "verify must be True, a CA bundle's path (str or os.PathLike) or an ssl.SSLContext, "
        f"not {type(verify).__name__}"
    )


def _bundle(path: str, origin: str) -> CABundle:
    if os.path.isdir(path):
        return CABundle(path, is_dir=True, origin=origin)
    if os.path.isfile(path):
        return CABundle(path, is_dir=False, origin=origin)
    raise ConfigurationError(
        f"{origin.rstrip('=')}: no CA certificates at {path!r} (no such file or directory)"
    )


# One context per set of CAs for the life of the process: a context is safe
# to share between connections, loops and threads once built, and building
# one reads and parses the whole bundle. The caller's own context is never kept.
_CONTEXTS: dict[TrustStore | CABundle, ssl.SSLContext] = {}


def cached_ssl_context(trust: Trust) -> ssl.SSLContext | None:
    """
    The SSL context for ``trust`` if it needs no building; None if ``ssl_context`` must build it.
    """
    if isinstance(trust, ssl.SSLContext):
        return trust
    return _CONTEXTS.get(trust)


def ssl_context(trust: Trust) -> ssl.SSLContext:
    """
    The SSL context for ``trust``, built on first use (blocking: it reads the CA files).

    ConfigurationError if the CA certificates cannot be loaded.
    """
    context = cached_ssl_context(trust)
    if context is not None:
        return context
    assert not isinstance(trust, ssl.SSLContext)
    try:
        if trust is TrustStore.CERTIFI:
            context = ssl.create_default_context(cafile=certifi.where())
        elif trust.is_dir:
            context = ssl.create_default_context(capath=trust.path)
        else:
            context = ssl.create_default_context(cafile=trust.path)
    except OSError as exc:  # ssl.SSLError is one: a file that holds no certificate
        where = "certifi" if trust is TrustStore.CERTIFI else trust.describe()
        raise ConfigurationError(f"cannot load CA certificates from {where}: {exc}") from None
    # As aiohttp's own contexts do: say we speak HTTP/1.1 only.
    context.set_alpn_protocols(["http/1.1"])
    # Two threads racing here both build one; the first kept is the one used.
    return _CONTEXTS.setdefault(trust, context)
