"""The two transports against scripted servers on loopback: which backend gets which, the lean
HTTP/1.1 pool, and httpx's stack honouring proxies and the trust store from the environment."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from llm_router.transport import PooledTransport, StockTransport, backend_transport

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A loopback server that runs ``script`` for every connection and counts connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Scripted:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await self.script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/x?y=1"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


def json_reply(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=PooledTransport(max_connections=4), timeout=2) as c:
        yield c


async def test_keep_alive_reuses_one_connection(client: httpx.AsyncClient) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(json_reply())

    async with Scripted(script) as server:
        for i in range(5):
            r = await client.post(server.url, content=b'{"n": %d}' % i)
            assert r.json() == {"ok": True}
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/x?y=1 HTTP/1.1\r\n")
    assert b"content-length: 8" in first.lower()
    assert first.endswith(b'{"n": 0}')


async def test_chunked_body_and_trailers(client: httpx.AsyncClient) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: y\r\n\r\n"
        )
        await server.read_request(reader)
        writer.write(json_reply())

    async with Scripted(script) as server:
        r = await client.get(server.url)
        assert r.text == "hello, world"
        r = await client.get(server.url)  # the connection is still good after the trailers
        assert r.json() == {"ok": True}
    assert server.connections == 1


async def test_connection_close_and_read_until_eof(client: httpx.AsyncClient) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    async with Scripted(script) as server:
        assert (await client.get(server.url)).text == "until the end"
        assert (await client.get(server.url)).text == "until the end"
    assert server.connections == 2


async def test_server_closing_an_idle_connection_is_retried_once(
    client: httpx.AsyncClient,
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(json_reply())
        await writer.drain()
        await reader.read(1)  # the next request arrives... and the server hangs up unanswered

    async with Scripted(script) as server:
        assert (await client.get(server.url)).status_code == 200
        assert (await client.get(server.url)).status_code == 200
    assert server.connections >= 2


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
        (b"NOT HTTP AT ALL\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", httpx.RemoteProtocolError),
        (
            b"HTTP/1.1 200 OK\r\n" + b"x-big: " + b"a" * 70_000 + b"\r\n\r\n",
            httpx.RemoteProtocolError,
        ),
    ],
    ids=["truncated", "bad chunk", "not http", "bad header", "bad length", "huge head"],
)
async def test_malformed_responses(client: httpx.AsyncClient, reply: bytes, error: type) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(reply)
        await writer.drain()

    async with Scripted(script) as server:
        with pytest.raises(error):
            await client.get(server.url)


async def test_timeouts_and_refusal() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await asyncio.sleep(5)

    async def stalls_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    transport = PooledTransport()
    async with httpx.AsyncClient(transport=transport, timeout=0.2) as client:
        async with Scripted(silent) as server:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(server.url)
        async with Scripted(stalls_midway) as server:
            url = server.url
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url)
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(url)  # the server is gone
        assert isinstance(info.value.__cause__, OSError)


async def test_pool_limit_waits_then_times_out() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await release.wait()
        writer.write(json_reply())
        await writer.drain()

    transport = PooledTransport(max_connections=1)
    timeout = httpx.Timeout(2, pool=0.1)
    async with (
        Scripted(slow) as server,
        httpx.AsyncClient(transport=transport, timeout=timeout) as c,
    ):
        first = asyncio.create_task(c.get(server.url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await c.get(server.url)
        release.set()
        assert (await first).status_code == 200


async def test_an_unread_stream_does_not_leak_its_slot() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(json_reply(b"x" * 1000))

    transport = PooledTransport(max_connections=1)
    async with Scripted(script) as server, httpx.AsyncClient(transport=transport, timeout=1) as c:
        for _ in range(3):
            async with c.stream("GET", server.url) as r:
                assert r.status_code == 200  # closed without reading the body
        assert (await c.get(server.url)).status_code == 200


# --- which transport a backend gets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("urls", "lean"),
    [
        (["http://127.0.0.1:11434/v1", None], True),
        (["http://localhost:8045/v1", None], True),
        (["http://[::1]:8080/v1", None], True),
        (["http://127.0.0.2:8080/v1", None], True),
        (["http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/api/version"], True),
        (["https://127.0.0.1:8443/v1", None], False),
        (["http://10.0.0.5:11434/v1", None], False),
        (["https://gateway.example.com/v1", None], False),
        (["http://localhost.example.com/v1", None], False),
        (["http://127.0.0.1:11434/v1", "http://10.0.0.5/health"], False),
    ],
    ids=[
        "ipv4 loopback",
        "localhost",
        "ipv6 loopback",
        "127/8",
        "loopback health url",
        "tls on loopback",
        "remote http",
        "remote https",
        "lookalike name",
        "remote health url",
    ],
)
async def test_backend_transport_choice(urls: list[str | None], lean: bool) -> None:
    transport = backend_transport(urls, max_connections=4)
    try:
        assert isinstance(transport, PooledTransport if lean else StockTransport)
    finally:
        await transport.aclose()


async def test_lean_transport_refuses_tls() -> None:
    async with httpx.AsyncClient(transport=PooledTransport()) as c:
        with pytest.raises(httpx.UnsupportedProtocol):
            await c.get("https://127.0.0.1:1/v1/models")


# --- httpx's stack for everything else -------------------------------------------------------


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy or trust-store settings from the shell running the tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return monkeypatch


@pytest.mark.parametrize("bypassed", [False, True], ids=["via proxy", "no_proxy"])
async def test_stock_transport_honours_proxy_environment(
    clean_proxy_env: pytest.MonkeyPatch, bypassed: bool
) -> None:
    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await direct.read_request(reader)
        writer.write(json_reply(b'{"via":"direct"}', b"connection: close\r\n"))
        await writer.drain()

    async def proxy_script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await proxy.read_request(reader)
        writer.write(json_reply(b'{"via":"proxy"}', b"connection: close\r\n"))
        await writer.drain()

    async with Scripted(origin) as direct, Scripted(proxy_script) as proxy:
        proxy_port = proxy.url.split(":")[2].split("/")[0]
        clean_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        if bypassed:
            clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        target = direct.url
        transport = StockTransport()  # reads the environment when built, as at service start
        async with httpx.AsyncClient(transport=transport, timeout=2) as c:
            r = await c.get(target)
    assert r.json() == {"via": "direct" if bypassed else "proxy"}
    if not bypassed:
        # A proxied plain-HTTP request carries the absolute URL.
        assert proxy.requests[0].startswith(b"GET " + target.encode() + b" HTTP/1.1")
        assert direct.connections == 0


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("trusted", [False, True], ids=["unknown ca", "ssl_cert_file"])
async def test_stock_transport_verifies_tls_against_the_trust_store(
    clean_proxy_env: pytest.MonkeyPatch, tmp_path: Path, trusted: bool
) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(json_reply(b'{"tls":true}', b"connection: close\r\n"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    if trusted:
        clean_proxy_env.setenv("SSL_CERT_FILE", str(cert))
    try:
        async with httpx.AsyncClient(transport=StockTransport(), timeout=5) as c:
            if trusted:
                assert (await c.get(f"https://127.0.0.1:{port}/v1/models")).json() == {"tls": True}
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.get(f"https://127.0.0.1:{port}/v1/models")
    finally:
        server.close()
