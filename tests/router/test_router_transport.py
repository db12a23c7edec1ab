"""The lean HTTP/1.1 transport against scripted servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from llm_router.transport import PooledTransport

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
