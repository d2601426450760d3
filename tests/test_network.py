"""
Networks that are not the open internet: an egress proxy, a private CA.

A real CONNECT proxy on loopback in front of a real TLS server on loopback,
whose certificate a private CA (trustme) signed; the client's default
transport goes through it as it would in production.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import httpx
import pytest
import trustme

from vobiz_async import (
    APIConnectError,
    APIConnectionError,
    AsyncVobiz,
    ConfigurationError,
    Outcome,
    RetryPolicy,
    TLSCertificateError,
)
from vobiz_async._network import environment_proxy
from vobiz_async.testing import FakeVobiz

from .clirun import cli_env, vobiz_async
from .conftest import AUTH_ID, AUTH_TOKEN, FakeTime

PROXY_USER = "egress"
# "@", ":" and "/" must survive URL-quoting in a proxy URL; a leak of any form shows.
PROXY_PASSWORD = "pr0xy:pa/ss@word"
QUOTED_PASSWORD = "pr0xy%3Apa%2Fss%40word"


@attrs.frozen
class Seen:
    """One request as the proxy received it."""

    line: str
    headers: dict[str, str]


class ConnectProxy:
    """
    An HTTP proxy on 127.0.0.1 that tunnels CONNECT to loopback ports and records each request.

    With `credentials`, a CONNECT without the matching Proxy-Authorization gets
    407. Anything but CONNECT gets 405: the client must never send a request
    in clear text through it.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.seen: list[Seen] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def lines(self) -> list[str]:
        return [seen.line for seen in self.seen]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, *rest = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in rest)}
        self.seen.append(Seen(line, headers))
        method, target, _ = line.split(" ")
        host, _, port = target.rpartition(":")
        if method != "CONNECT":
            return self._refuse(writer, b"405 Method Not Allowed")
        if host != "127.0.0.1":
            return self._refuse(writer, b"403 Forbidden")  # loopback only, by design
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {token}":
                return self._refuse(writer, b"407 Proxy Authentication Required")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self._writers.append(upstream_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )

    def _refuse(self, writer: asyncio.StreamWriter, status: bytes) -> None:
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[..., Awaitable[tuple[ConnectProxy, str]]]]:
    """
    CONNECT proxies on loopback, closed when the test ends.

    `await proxies(credentials=...)` starts one and gives (proxy, its URL).
    """
    started: list[ConnectProxy] = []

    async def start(credentials: tuple[str, str] | None = None) -> tuple[ConnectProxy, str]:
        proxy = ConnectProxy(credentials)
        started.append(proxy)
        return proxy, await proxy.start()

    yield start
    for proxy in started:
        await proxy.close()


@pytest.fixture
def ca() -> trustme.CA:
    """A private CA, trusted by nothing until a test says so."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def tls_url(
    ca: trustme.CA, raw_tls_server: Callable[[ssl.SSLContext], Awaitable[str]]
) -> str:
    """The base URL of a TLS server on 127.0.0.1 with a certificate the private CA signed."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    return await raw_tls_server(server_context)


def connect_line(base_url: str) -> str:
    return f"CONNECT {httpx.URL(base_url).netloc.decode()} HTTP/1.1"


# -- proxies -----------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
async def test_proxy_variables_send_every_request_through_the_proxy(
    variable: str,
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind an egress proxy named in the environment, stops tunnel through it with CONNECT."""
    proxy, proxy_url = await proxies()
    monkeypatch.setenv(variable, proxy_url)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=tls_url) as vobiz:
        result = await vobiz.stop_stream("call-1", "s-1")
    assert result.outcome is Outcome.STOPPED
    assert proxy.lines() == [connect_line(tls_url)]


async def test_proxy_argument_with_credentials_authenticates_and_never_shows_the_password(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """proxy= with user:password@ sends Proxy-Authorization; the password is in no repr or log."""
    caplog.set_level(logging.DEBUG)
    proxy, proxy_url = await proxies(credentials=(PROXY_USER, PROXY_PASSWORD))
    with_credentials = proxy_url.replace("://", f"://{PROXY_USER}:{QUOTED_PASSWORD}@")
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=tls_url, proxy=with_credentials, verify=ca_file
    ) as vobiz:
        result = await vobiz.stop_stream("call-1", "s-1")
        shown = repr(vobiz) + repr(result)
    assert result.outcome is Outcome.STOPPED
    assert proxy.lines() == [connect_line(tls_url)]
    for text in (shown, caplog.text):
        assert PROXY_PASSWORD not in text
        assert QUOTED_PASSWORD not in text


async def test_httpx_proxy_object_is_accepted(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]], tls_url: str, ca_file: Path
) -> None:
    """proxy= also takes an httpx.Proxy, with its auth, as httpx's own proxy= does."""
    proxy, proxy_url = await proxies(credentials=(PROXY_USER, PROXY_PASSWORD))
    given = httpx.Proxy(proxy_url, auth=(PROXY_USER, PROXY_PASSWORD))
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=tls_url, proxy=given, verify=str(ca_file)
    ) as vobiz:
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED
    assert proxy.lines() == [connect_line(tls_url)]


async def test_refused_proxy_credentials_fail_without_showing_the_password(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    caplog: pytest.LogCaptureFixture,
    fake_time: FakeTime,
) -> None:
    """A 407 from the proxy: a connection error that names the proxy, not its password."""
    caplog.set_level(logging.DEBUG)
    _, proxy_url = await proxies(credentials=(PROXY_USER, "the-right-one"))
    wrong = proxy_url.replace("://", f"://{PROXY_USER}:{QUOTED_PASSWORD}@")
    async with AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url=tls_url,
        proxy=wrong,
        verify=ca_file,
        retry=RetryPolicy(max_attempts=2),
        sleep=fake_time.sleep,
    ) as vobiz:
        with pytest.raises(APIConnectionError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    message = str(info.value)
    assert "407" in message
    assert "proxy" in message.lower()
    for text in (message, repr(info.value), caplog.text):
        assert PROXY_PASSWORD not in text
        assert QUOTED_PASSWORD not in text
        assert AUTH_TOKEN not in text


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_naming_the_host_goes_direct(
    no_proxy: str,
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NO_PROXY=127.0.0.1 (or *) bypasses HTTPS_PROXY for that host, as httpx does."""
    proxy, proxy_url = await proxies()
    monkeypatch.setenv("HTTPS_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=tls_url, verify=ca_file) as vobiz:
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED
    assert proxy.seen == []


async def test_no_proxy_for_another_host_still_proxies(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NO_PROXY entry for other hosts (a suffix, an address) leaves this one proxied."""
    proxy, proxy_url = await proxies()
    monkeypatch.setenv("HTTPS_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "internal.example,.example.org,127.0.0.2,https://127.0.0.1:1")
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=tls_url, verify=ca_file) as vobiz:
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED
    assert proxy.lines() == [connect_line(tls_url)]


async def test_trust_env_false_ignores_the_proxy_variables(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """trust_env=False: HTTPS_PROXY is not used."""
    proxy, proxy_url = await proxies()
    monkeypatch.setenv("HTTPS_PROXY", proxy_url)
    async with AsyncVobiz(
        AUTH_ID, AUTH_TOKEN, base_url=tls_url, verify=ca_file, trust_env=False
    ) as vobiz:
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED
    assert proxy.seen == []


async def test_plain_http_to_loopback_never_goes_through_a_proxy(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    A plain-http base URL (loopback only) goes direct whatever the variables say.

    Through a proxy the token would travel in clear text to it; so proxy=
    with such a base URL is refused.
    """
    proxy, proxy_url = await proxies()
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(variable, proxy_url)
    fake = FakeVobiz(open_world=True)
    async with (
        fake.serve() as base_url,
        AsyncVobiz(fake.auth_id, fake.auth_token, base_url=base_url) as vobiz,
    ):
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED
    assert proxy.seen == []
    with pytest.raises(ConfigurationError, match="clear text"):
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=base_url, proxy=proxy_url)


async def test_unreachable_proxy_is_a_connect_error_naming_the_proxy(
    tls_url: str, ca_file: Path, fake_time: FakeTime
) -> None:
    """A proxy that refuses connections: APIConnectError whose message says it was the proxy."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url=tls_url,
        proxy=f"http://127.0.0.1:{port}",
        verify=ca_file,
        retry=RetryPolicy(max_attempts=2),
        sleep=fake_time.sleep,
    ) as vobiz:
        with pytest.raises(APIConnectError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert "proxy" in str(info.value).lower()
    assert info.value.attempts == 2


@pytest.mark.parametrize(
    ("proxy", "says"),
    [
        pytest.param(f"socks5://u:{QUOTED_PASSWORD}@127.0.0.1:1080", "SOCKS", id="socks"),
        pytest.param(f"ftp://u:{QUOTED_PASSWORD}@proxy.example:21", "http://", id="ftp"),
        pytest.param(f"http://u:{QUOTED_PASSWORD}@[::1", "not a valid proxy URL", id="broken"),
        pytest.param(f"http://u:{QUOTED_PASSWORD}@", "host", id="no-host"),
        pytest.param(42, "must be a URL str", id="int"),
        pytest.param(
            httpx.Proxy("http://proxy.example:3128", headers={"X-Team": "voice"}),
            "headers",
            id="proxy-headers",
        ),
    ],
)
def test_bad_proxy_is_a_configuration_error_that_hides_the_password(
    proxy: object, says: str
) -> None:
    """A proxy the default transport cannot use: refused at construction, without the password."""
    with pytest.raises(ConfigurationError) as info:
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, proxy=proxy)  # type: ignore[arg-type]
    assert says in str(info.value)
    assert PROXY_PASSWORD not in str(info.value)
    assert QUOTED_PASSWORD not in str(info.value)


def test_bad_proxy_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy variable the default transport cannot use names the variable, not the password."""
    monkeypatch.setenv("HTTPS_PROXY", f"socks5h://u:{QUOTED_PASSWORD}@127.0.0.1:1080")
    with pytest.raises(ConfigurationError, match="HTTPS_PROXY") as info:
        AsyncVobiz(AUTH_ID, AUTH_TOKEN)
    assert QUOTED_PASSWORD not in str(info.value)
    # The caller's own client is theirs to configure: the variable is not read.
    AsyncVobiz(AUTH_ID, AUTH_TOKEN, http_client=httpx.AsyncClient(trust_env=False))


# -- private CAs --------------------------------------------------------------------


def _path_str(ca_file: Path, _: trustme.CA) -> object:
    return str(ca_file)


def _path(ca_file: Path, _: trustme.CA) -> object:
    return ca_file


def _context(_: Path, ca: trustme.CA) -> object:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.parametrize("verify", [_path_str, _path, _context], ids=["str", "Path", "SSLContext"])
async def test_verify_trusts_a_private_ca(
    verify: Callable[[Path, trustme.CA], object], ca: trustme.CA, ca_file: Path, tls_url: str
) -> None:
    """verify= a CA bundle's path (str or Path) or an ssl.SSLContext trusts the private CA."""
    async with AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url=tls_url,
        verify=verify(ca_file, ca),  # type: ignore[arg-type]
    ) as vobiz:
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED


async def test_ssl_cert_file_set_after_import_is_honoured(
    ca_file: Path, tls_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE set any time before the client is built (aiohttp long imported) is used."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=tls_url) as vobiz:
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED


@pytest.fixture
def hashed_ca_dir(ca_file: Path, tmp_path: Path) -> Path:
    """A directory holding the private CA under its subject hash, as c_rehash names it."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to hash the CA's subject")
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / f"{digest}.0").write_bytes(ca_file.read_bytes())
    return directory


async def test_ssl_cert_dir_is_honoured(
    hashed_ca_dir: Path, tls_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_DIR, a directory of CAs named by their hash, is used when SSL_CERT_FILE is unset."""
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed_ca_dir))
    async with AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url=tls_url) as vobiz:
        assert (await vobiz.stop_stream("call-1", "s-1")).outcome is Outcome.STOPPED


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"trust_env": False}, id="trust_env=False"),
        pytest.param({"verify": "other"}, id="verify=another-CA"),
    ],
)
async def test_an_untrusted_server_is_a_certificate_error_never_retried(
    options: dict[str, object],
    ca_file: Path,
    tls_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_time: FakeTime,
) -> None:
    """
    A CA that did not sign the server's certificate: TLSCertificateError after one request.

    trust_env=False ignores SSL_CERT_FILE (certifi's CAs do not know the
    private one); verify= another CA's bundle replaces the environment's.
    """
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    if options.get("verify") == "other":
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        options = {"verify": other}
    async with AsyncVobiz(
        AUTH_ID,
        AUTH_TOKEN,
        base_url=tls_url,
        sleep=fake_time.sleep,
        **options,  # type: ignore[arg-type]
    ) as vobiz:
        with pytest.raises(TLSCertificateError) as info:
            await vobiz.stop_stream("call-1", "s-1")
    assert info.value.attempts == 1
    assert fake_time.sleeps == []


async def test_a_ca_file_that_holds_no_certificate_fails_at_first_use_naming_it(
    tmp_path: Path,
) -> None:
    """
    Building the client reads no file (that keeps it cheap); the first stop says what is wrong.

    ConfigurationError naming the file, with nothing sent: the port here
    refuses connections, which would be an APIConnectError.
    """
    broken = tmp_path / "not-a-ca.pem"
    broken.write_text("this is not a certificate\n")
    vobiz = AsyncVobiz(AUTH_ID, AUTH_TOKEN, base_url="https://127.0.0.1:1/api/v1", verify=broken)
    with pytest.raises(ConfigurationError, match=r"not-a-ca\.pem") as info:
        await vobiz.stop_stream("call-1", "s-1")
    assert info.value.attempts == 0
    await vobiz.aclose()


@pytest.mark.parametrize(
    ("verify", "says"),
    [
        pytest.param(False, "verify=False is not allowed", id="False"),
        pytest.param(1, "verify must be", id="int"),
        pytest.param(
            "/nonexistent/ca.pem", "no CA certificates at '/nonexistent/ca.pem'", id="missing"
        ),
    ],
)
def test_bad_verify_is_a_configuration_error(verify: object, says: str) -> None:
    """verify= must be True, an existing CA bundle path or an SSL context; False is refused."""
    with pytest.raises(ConfigurationError, match=says):
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, verify=verify)  # type: ignore[arg-type]


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_missing_ca_variable_path_is_named(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SSL_CERT_FILE or SSL_CERT_DIR naming nothing fails at construction, naming the variable."""
    monkeypatch.setenv(variable, "/nonexistent/ca")
    with pytest.raises(ConfigurationError, match=variable):
        AsyncVobiz(AUTH_ID, AUTH_TOKEN)
    AsyncVobiz(AUTH_ID, AUTH_TOKEN, trust_env=False)  # not read at all


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"proxy": "http://proxy.example:3128"}, id="proxy"),
        pytest.param({"verify": ssl.create_default_context()}, id="verify"),
        pytest.param({"trust_env": False}, id="trust_env"),
    ],
)
@pytest.mark.parametrize("replaced", ["http_client", "transport"])
def test_network_options_with_the_callers_own_client_are_refused(
    options: dict[str, object], replaced: str
) -> None:
    """proxy=, verify= and trust_env= configure the default transport; with your own, say so."""
    own: object = (
        httpx.AsyncClient()
        if replaced == "http_client"
        else httpx.MockTransport(lambda _: httpx.Response(204))
    )
    with pytest.raises(ConfigurationError, match="configure the default transport"):
        AsyncVobiz(AUTH_ID, AUTH_TOKEN, **{replaced: own}, **options)  # type: ignore[arg-type]


# -- the command line -----------------------------------------------------------------


async def test_cli_honours_the_proxy_and_ca_variables(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    tmp_path: Path,
) -> None:
    """The console script, behind an egress proxy and a private CA named in its environment."""
    proxy, proxy_url = await proxies()
    streams = tmp_path / "streams.csv"
    streams.write_text("call_uuid,stream_id\n" + "".join(f"c{i},s{i}\n" for i in range(5)))
    env = cli_env(None, tls_url, HTTPS_PROXY=proxy_url, SSL_CERT_FILE=str(ca_file))
    env |= {"VOBIZ_AUTH_ID": AUTH_ID, "VOBIZ_AUTH_TOKEN": AUTH_TOKEN}

    run = await vobiz_async("stop-streams", streams, "--json", env=env)

    assert run.status == 0, run
    assert json.loads(run.stdout)["stopped"] == 5
    assert proxy.lines()
    assert set(proxy.lines()) == {connect_line(tls_url)}


async def test_cli_proxy_and_ca_bundle_options(
    proxies: Callable[..., Awaitable[tuple[ConnectProxy, str]]],
    tls_url: str,
    ca_file: Path,
    tmp_path: Path,
) -> None:
    """--proxy (with credentials) and --ca-bundle do what the variables do."""
    proxy, proxy_url = await proxies(credentials=(PROXY_USER, PROXY_PASSWORD))
    with_credentials = proxy_url.replace("://", f"://{PROXY_USER}:{QUOTED_PASSWORD}@")
    env = cli_env(None, tls_url) | {"VOBIZ_AUTH_ID": AUTH_ID, "VOBIZ_AUTH_TOKEN": AUTH_TOKEN}

    run = await vobiz_async(
        "stop-all-streams",
        "-",
        "--json",
        "--proxy",
        with_credentials,
        "--ca-bundle",
        ca_file,
        env=env,
        stdin=b"call_uuid\nc1\nc2\n",
    )

    assert run.status == 0, run
    assert json.loads(run.stdout)["stopped"] == 2
    assert set(proxy.lines()) == {connect_line(tls_url)}


async def test_cli_bad_proxy_variable_is_a_usage_error_without_the_password(
    tmp_path: Path,
) -> None:
    """A SOCKS proxy in HTTPS_PROXY: exit 2 naming the variable; no traceback, no password."""
    env = cli_env(None, None, HTTPS_PROXY=f"socks5://u:{QUOTED_PASSWORD}@127.0.0.1:1080")
    env |= {"VOBIZ_AUTH_ID": AUTH_ID, "VOBIZ_AUTH_TOKEN": AUTH_TOKEN}
    run = await vobiz_async("stop-all-streams", "-", env=env, stdin=b"call_uuid\nc1\n")
    assert run.status == 2, run
    assert "HTTPS_PROXY" in run.stderr
    assert "Traceback" not in run.stderr
    assert QUOTED_PASSWORD not in run.stderr + run.stdout


# -- which proxy, by httpx's rules ---------------------------------------------------


def httpx_choice(url: httpx.URL) -> str | None:
    """The proxy httpx itself would use for `url`, from its own (internal) resolution."""
    from httpx._utils import URLPattern, get_environment_proxies

    mounts = sorted(
        ((URLPattern(key), value) for key, value in get_environment_proxies().items()),
        key=lambda item: item[0].priority,
    )
    return next((value for pattern, value in mounts if pattern.matches(url)), None)


@pytest.mark.parametrize(
    "no_proxy",
    [
        "",
        "*",
        "127.0.0.1",
        "127.0.0.2",
        "::1",
        "localhost",
        "vobiz.ai",
        ".vobiz.ai",
        "api.vobiz.ai",
        "pi.vobiz.ai",
        "https://api.vobiz.ai",
        "http://api.vobiz.ai",
        "api.vobiz.ai:8443",
        "https://api.vobiz.ai:8443",
        " example.com , vobiz.ai ",
        "192.168.0.0/16",
        "http://[",
    ],
)
@pytest.mark.parametrize(
    "url",
    [
        "https://api.vobiz.ai/api/v1",
        "https://api.vobiz.ai:8443/api/v1",
        "https://127.0.0.1:8443/api/v1",
        "https://[::1]:8443/api/v1",
        "https://localhost/api/v1",
    ],
)
@pytest.mark.parametrize(
    "variables", [("HTTPS_PROXY",), ("ALL_PROXY",), ("HTTPS_PROXY", "ALL_PROXY")]
)
def test_the_environment_proxy_is_the_one_httpx_would_use(
    no_proxy: str, url: str, variables: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY, ALL_PROXY and NO_PROXY decide as they do for plain httpx."""
    for variable in variables:
        monkeypatch.setenv(variable, f"{variable.lower()}.example:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    found = environment_proxy(httpx.URL(url))
    assert (found[0] if found else None) == httpx_choice(httpx.URL(url))
