"""A loopback TCP server that answers every connection with bytes the test chooses.

For upstreams that misbehave below HTTP (a body cut short, a bad chunk, 200 MiB of answer):
``reply`` is called with each request's raw head and body and returns an iterable of byte strings,
written in order; the server then closes the connection. Writing stops as soon as the client
has gone, so a huge answer costs only what the client actually read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

Reply = Callable[[bytes, bytes], Iterable[bytes]]


class RawServer:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.port = 0
        self.sent = 0  # bytes written, over all connections
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            for piece in self.reply(head, body):
                if piece == b"<wait>":
                    await asyncio.sleep(5)
                    continue
                writer.write(piece)
                self.sent += len(piece)
                await asyncio.wait_for(writer.drain(), 10)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # the server is stopping; ending quietly keeps asyncio from reporting it
        finally:
            writer.close()

    def __enter__(self) -> RawServer:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def huge(total: int, piece: int = 1 << 20) -> Iterable[bytes]:
    """``total`` bytes of JSON-ish filler, a piece at a time (never held whole)."""
    block = b"x" * piece
    sent = 0
    while sent < total:
        yield block
        sent += piece
