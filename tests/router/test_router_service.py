"""The service layer without HTTP in front, backends on httpx.MockTransport."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
from llm_router.config import Secrets, parse_config
from llm_router.service import RouterService

SSE = (
    b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)


def service(tmp_path: Path, handler) -> RouterService:  # type: ignore[no-untyped-def]
    cfg = parse_config(
        {
            "backends": [
                {
                    "name": "local",
                    "kind": "openai",
                    "role": "local",
                    "base_url": "http://engine.invalid/v1",
                    "model": "m",
                    "price_per_1k_tokens": 0.0001,
                }
            ],
            "ledger": {"path": str(tmp_path / "ledger.sqlite3")},
        }
    )
    return RouterService(cfg, Secrets({}, ()), transports={"local": httpx.MockTransport(handler)})


def usage_rows(tmp_path: Path) -> list[tuple[int, int]]:
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    try:
        return conn.execute("SELECT prompt_tokens, completion_tokens FROM usage").fetchall()
    finally:
        conn.close()


async def test_a_stream_the_client_never_read_is_closed_and_recorded(tmp_path: Path) -> None:
    closed: list[bool] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield SSE

        async def aclose(self) -> None:
            closed.append(True)

    svc = service(tmp_path, lambda request: httpx.Response(200, stream=Body()))
    await svc.start(probe=False)
    relay = await svc.chat_stream({"messages": [{"role": "user", "content": "x"}]}, "normal", None)
    await relay.close()  # the client left before the first event was sent
    await relay.close()  # closing twice is harmless
    await svc.stop()  # waits for the background ledger write
    assert closed == [True]
    assert len(usage_rows(tmp_path)) == 1


async def test_a_stream_read_to_the_end_is_recorded_before_done(tmp_path: Path) -> None:
    svc = service(tmp_path, lambda request: httpx.Response(200, content=SSE))
    await svc.start(probe=False)
    relay = await svc.chat_stream({"messages": [{"role": "user", "content": "x"}]}, "normal", None)
    events = []
    async for event in relay.events():
        if event.startswith(b"data: [DONE]"):
            assert usage_rows(tmp_path) == [(7, 3)]  # committed before [DONE] goes out
        events.append(event)
    assert events[-1] == b"data: [DONE]\n\n"
    assert b"usage" not in b"".join(events)
    await svc.stop()
    assert usage_rows(tmp_path) == [(7, 3)]
