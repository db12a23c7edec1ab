"""How the router reaches its backends: two transports, chosen in one place.

:func:`backend_transport` picks, per backend:

* :class:`PooledTransport`, a lean HTTP/1.1 pool of our own, for plain-HTTP backends on this
  host's loopback (the local engine, the hot path). httpx's default transport (httpcore) costs
  about half a millisecond of CPU per request, most of it in connection-pool bookkeeping that
  polls every idle socket on every request; the router would add that to every call it
  forwards. Loopback needs neither TLS nor a proxy, so this pool has neither: it speaks only
  what OpenAI-compatible engines need (request bodies sent whole, response bodies framed by
  Content-Length, chunked encoding or connection close; no HTTP/2, no ``Expect``).
* :class:`StockTransport`, httpx's own client stack, for every other backend (the cloud
  gateway, an engine on another machine): proxies from the service's environment
  (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) and TLS verified against the
  host's trust store (OpenSSL's default paths, which ``SSL_CERT_FILE``/``SSL_CERT_DIR``
  override), so a company CA installed with ``update-ca-certificates`` is trusted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterable

import httpx

_MAX_HEAD = 64 * 1024
_READ_SIZE = 64 * 1024
_Key = tuple[str, int]


def is_loopback_http(url: str | httpx.URL) -> bool:
    """A plain-HTTP URL whose host is this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    parsed = httpx.URL(url)
    if parsed.scheme != "http":
        return False
    host = parsed.host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def backend_transport(
    urls: Iterable[str | None], *, max_connections: int
) -> httpx.AsyncBaseTransport:
    """The transport for a backend that is reached at ``urls`` (its base and health URLs).

    The lean pool only when every one of them is plain HTTP on loopback; httpx's otherwise.
    """
    if all(is_loopback_http(u) for u in urls if u is not None):
        return PooledTransport(max_connections=max_connections)
    return StockTransport(max_connections=max_connections)


class StockTransport(httpx.AsyncBaseTransport):
    """httpx's stock client stack behind the transport interface the backends call.

    The client, not a bare ``AsyncHTTPTransport``, because proxy selection from the
    environment (including ``NO_PROXY``) lives in ``httpx.AsyncClient``. Requests arrive
    fully built, with their timeouts in ``request.extensions``; redirects are not followed.
    """

    def __init__(self, *, max_connections: int = 100) -> None:
        self._client = httpx.AsyncClient(
            verify=ssl.create_default_context(),  # the host's trust store, not certifi's
            trust_env=True,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._client.send(request, stream=True)

    async def aclose(self) -> None:
        await self._client.aclose()


class _Connection:
    __slots__ = ("key", "reader", "reused", "writer")

    def __init__(self, key: _Key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.key = key
        self.reader = reader
        self.writer = writer
        self.reused = False

    def usable(self) -> bool:
        """An idle connection the server has closed must not be reused.

        Only public StreamReader state: a server that closed an idle connection shows as
        end-of-file once the event loop has seen its FIN; one that closes it just as we send
        is caught by the single retry in :meth:`PooledTransport._send`.
        """
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        self.writer.close()


class PooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 over plain TCP: a last-in-first-out pool of asyncio streams."""

    def __init__(self, *, max_connections: int = 100, max_idle: int = 100) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Key, list[_Connection]] = {}
        self._max_idle = max_idle

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            # No TLS here by design: backend_transport() gives https backends httpx's stack.
            raise httpx.UnsupportedProtocol(
                f"the lean transport speaks plain http only, not {request.url.scheme}",
                request=request,
            )
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        try:
            await asyncio.wait_for(self._slots.acquire(), timeouts.get("pool"))
        except asyncio.TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None
        try:
            return await self._send(request, timeouts, retry=True)
        except BaseException:
            self._slots.release()
            raise

    async def _send(
        self, request: httpx.Request, timeouts: dict[str, float | None], *, retry: bool
    ) -> httpx.Response:
        conn = await self._connection(request, timeouts.get("connect"))
        payload = _serialise(request, await request.aread())
        try:
            conn.writer.write(payload)
            try:
                await asyncio.wait_for(conn.writer.drain(), timeouts.get("write"))
            except asyncio.TimeoutError:
                raise httpx.WriteTimeout("timed out sending", request=request) from None
            try:
                head = await asyncio.wait_for(
                    conn.reader.readuntil(b"\r\n\r\n"), timeouts.get("read")
                )
            except asyncio.TimeoutError:
                raise httpx.ReadTimeout(
                    "timed out waiting for the response", request=request
                ) from None
        except httpx.TimeoutException:
            conn.close()
            raise
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            conn.close()
            partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
            if conn.reused and retry and not partial:
                # A keep-alive connection the server closed just as we sent: nothing was
                # answered, so send once more on a fresh connection.
                return await self._send(request, timeouts, retry=False)
            raise httpx.RemoteProtocolError(
                "server closed the connection without a full response", request=request
            ) from exc
        except asyncio.LimitOverrunError as exc:
            conn.close()
            raise httpx.RemoteProtocolError("response head too large", request=request) from exc
        status, headers, framing, length, keep_alive = _parse_head(head, request)
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            framing, length = "length", 0
        body = _Body(self, conn, framing, length, keep_alive, timeouts.get("read"), request)
        return httpx.Response(
            status, headers=headers, stream=body, extensions={"http_version": b"HTTP/1.1"}
        )

    async def _connection(self, request: httpx.Request, timeout: float | None) -> _Connection:
        url = request.url
        port = url.port or 80
        key: _Key = (url.host, port)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(url.host, port, limit=_MAX_HEAD), timeout
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout("connect timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return _Connection(key, reader, writer)

    def release(self, conn: _Connection, reusable: bool) -> None:
        if reusable and conn.usable():
            idle = self._idle.setdefault(conn.key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
            else:
                conn.close()
        else:
            conn.close()
        self._slots.release()


def _serialise(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    has_length = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"content-length":
            has_length = True
        elif lower == b"transfer-encoding":
            continue  # the body is sent whole, with a length
        lines += [name, b": ", value, b"\r\n"]
    if not has_length and (body or request.method in ("POST", "PUT", "PATCH")):
        lines += [b"content-length: ", str(len(body)).encode("ascii"), b"\r\n"]
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


def _parse_head(
    head: bytes, request: httpx.Request
) -> tuple[int, list[tuple[bytes, bytes]], str, int, bool]:
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0]
    try:
        version, code = status_line.split(b" ", 2)[:2]
        status = int(code)
    except ValueError:
        raise httpx.RemoteProtocolError("malformed status line", request=request) from None
    if not version.startswith(b"HTTP/1."):
        raise httpx.RemoteProtocolError("not an HTTP/1.x response", request=request)
    headers: list[tuple[bytes, bytes]] = []
    length = -1
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError("malformed header line", request=request)
        value = value.strip()
        headers.append((name, value))
        lower = name.strip().lower()
        if lower == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise httpx.RemoteProtocolError("bad Content-Length", request=request) from None
        elif lower == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lower == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
    if chunked:
        return status, headers, "chunked", -1, keep_alive
    if length >= 0:
        return status, headers, "length", length, keep_alive
    return status, headers, "close", -1, False


class _Body(httpx.AsyncByteStream):
    def __init__(
        self,
        transport: PooledTransport,
        conn: _Connection,
        framing: str,
        length: int,
        keep_alive: bool,
        read_timeout: float | None,
        request: httpx.Request,
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._framing = framing
        self._length = length
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self._request = request
        self._complete = False
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if self._framing == "length":
                async for chunk in self._by_length():
                    yield chunk
            elif self._framing == "chunked":
                async for chunk in self._by_chunks():
                    yield chunk
            else:
                async for chunk in self._until_close():
                    yield chunk
            self._complete = True
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout("timed out reading the body", request=self._request) from None
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ) as exc:
            raise httpx.RemoteProtocolError(
                "response body ended early or is malformed", request=self._request
            ) from exc
        finally:
            if self._complete:
                self._finish()

    async def _read(self, n: int) -> bytes:
        return await asyncio.wait_for(self._conn.reader.readexactly(n), self._timeout)

    async def _by_length(self) -> AsyncIterator[bytes]:
        remaining = self._length
        while remaining > 0:
            chunk = await asyncio.wait_for(
                self._conn.reader.read(min(remaining, _READ_SIZE)), self._timeout
            )
            if not chunk:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(chunk)
            yield chunk

    async def _by_chunks(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        while True:
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), self._timeout)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await asyncio.wait_for(reader.readuntil(b"\r\n"), self._timeout)) != b"\r\n":
                    pass  # trailers, ignored
                return
            # The chunk's data as it arrives, as httpx's transport does, not held back whole.
            while size > 0:
                data = await asyncio.wait_for(reader.read(min(size, _READ_SIZE)), self._timeout)
                if not data:
                    raise asyncio.IncompleteReadError(b"", size)
                size -= len(data)
                yield data
            if await self._read(2) != b"\r\n":
                raise ValueError("chunk not terminated by CRLF")

    async def _until_close(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await asyncio.wait_for(self._conn.reader.read(_READ_SIZE), self._timeout)
            if not chunk:
                return
            yield chunk

    def _finish(self) -> None:
        if not self._released:
            self._released = True
            reusable = self._complete and self._keep_alive and self._framing != "close"
            self._transport.release(self._conn, reusable)

    async def aclose(self) -> None:
        self._finish()  # an unread remainder makes the connection unusable: it is closed
