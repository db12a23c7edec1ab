"""Backends against httpx.MockTransport: how each upstream answer is classified."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import zstandard
from llm_router.backends import (
    BackendFailure,
    DecompressedTooLarge,
    InvalidFrame,
    OpenAIBackend,
    ZstdCodec,
)
from llm_router.config import BackendConfig
from llm_router.redact import Redactor
from llm_router.sse import StreamTap

KEY = "sk-mock-key-42"
Handler = Callable[[httpx.Request], httpx.Response]


def backend(handler: Handler, key: str | None = KEY) -> OpenAIBackend:
    cfg = BackendConfig(
        name="cloud",
        kind="openai",
        role="cloud",
        base_url="http://cloud.invalid/v1",
        model="m1",
        timeout_s=2,
    )
    return OpenAIBackend(cfg, key, Redactor([KEY]), transport=httpx.MockTransport(handler))


def completion(content: object = "dense", usage: object = None) -> dict[str, object]:
    body: dict[str, object] = {"choices": [{"message": {"role": "assistant", "content": content}}]}
    if usage is not None:
        body["usage"] = usage
    return body


async def test_complete_sends_model_key_and_reads_usage() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=completion("d", {"prompt_tokens": 11, "completion_tokens": 3})
        )

    b = backend(handler)
    done = await b.complete([{"role": "user", "content": "hello"}], 64)
    assert (done.text, done.usage.prompt_tokens, done.usage.completion_tokens) == ("d", 11, 3)
    assert not done.usage.estimated
    request = seen[0]
    assert str(request.url) == "http://cloud.invalid/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert (body["model"], body["max_tokens"], body["stream"]) == ("m1", 64, False)
    await b.aclose()


async def test_missing_usage_is_estimated() -> None:
    b = backend(lambda r: httpx.Response(200, json=completion("x" * 40)))
    done = await b.complete([{"role": "user", "content": "y" * 400}], 64)
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (100, 10)
    assert done.usage.estimated


async def test_no_key_no_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    await backend(handler, key=None).complete([{"role": "user", "content": "x"}], 8)
    assert "authorization" not in seen[0].headers


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("handler", "reason", "detail"),
    [
        (lambda r: httpx.Response(500, text="boom"), "http_5xx", "HTTP 500: boom"),
        (lambda r: httpx.Response(503), "http_5xx", "HTTP 503"),
        (lambda r: httpx.Response(429, text="slow down"), "rate_limited", "HTTP 429"),
        (lambda r: httpx.Response(400, text="bad"), "http_4xx", "HTTP 400: bad"),
        (lambda r: httpx.Response(200, text="<html>"), "malformed", "not JSON"),
        (lambda r: httpx.Response(200, json={"choices": []}), "malformed", "choices[0]"),
        (lambda r: httpx.Response(200, json=[1, 2]), "malformed", "choices[0]"),
        (lambda r: httpx.Response(200, json=completion(None)), "malformed", "not a string"),
        (raising(httpx.ReadTimeout("slow")), "timeout", "read timeout after 2s"),
        (raising(httpx.ConnectTimeout("slow")), "timeout", "connect timeout"),
        (raising(httpx.ConnectError("refused")), "connect_error", "cannot connect"),
        (raising(httpx.RemoteProtocolError("eof")), "protocol_error", "response malformed"),
    ],
)
async def test_failures_are_classified(handler: Handler, reason: str, detail: str) -> None:
    with pytest.raises(BackendFailure) as info:
        await backend(handler).complete([{"role": "user", "content": "x"}], 8)
    assert info.value.reason == reason
    assert detail in info.value.detail


async def test_upstream_echo_of_the_key_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text=f"denied: {request.headers['authorization']}")

    with pytest.raises(BackendFailure) as info:
        await backend(handler).complete([{"role": "user", "content": "x"}], 8)
    assert KEY not in info.value.detail
    assert "[redacted]" in info.value.detail


async def test_tool_call_responses_pass_chat_but_not_compression() -> None:
    b = backend(lambda r: httpx.Response(200, json=completion(None)))
    result = await b.chat({"model": "x", "messages": [{"role": "user", "content": "x"}]})
    assert result.text is None
    assert result.body.startswith(b"{")


async def test_stream_first_chunk_and_rest() -> None:
    events = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\n'
    b = backend(lambda r: httpx.Response(200, content=events))
    stream = await b.open_stream({"messages": [], "stream": True})
    rest = b"".join([c async for c in stream.rest()])
    assert stream.first + rest == events
    await stream.aclose()


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(502, text="bad gateway"), "http_5xx"),
        (httpx.Response(200, content=b'{"not": "sse"}'), "malformed"),
        (httpx.Response(200, content=b""), "malformed"),
    ],
)
async def test_stream_failures_before_the_first_byte(response: httpx.Response, reason: str) -> None:
    b = backend(lambda r: response)
    with pytest.raises(BackendFailure) as info:
        await b.open_stream({"messages": [], "stream": True})
    assert info.value.reason == reason


async def test_probe() -> None:
    await backend(lambda r: httpx.Response(200, json={"data": []})).probe()  # no exception
    with pytest.raises(BackendFailure):
        await backend(lambda r: httpx.Response(404)).probe()


# --- zstd ------------------------------------------------------------------------------------


def test_zstd_round_trip_and_limits() -> None:
    codec = ZstdCodec(level=19)
    data = b"abc " * 1000
    frame = codec.compress(data)
    assert len(frame) < 100
    assert ZstdCodec.decompress(frame, len(data)) == data
    with pytest.raises(DecompressedTooLarge, match="declares 4000 bytes"):
        ZstdCodec.decompress(frame, len(data) - 1)
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    with pytest.raises(DecompressedTooLarge, match="exceeds the limit"):
        ZstdCodec.decompress(streamed, 100)
    with pytest.raises(InvalidFrame):
        ZstdCodec.decompress(b"not zstd", 100)
    with pytest.raises(InvalidFrame):
        ZstdCodec.decompress(frame[:-5], len(data))


# --- SSE -------------------------------------------------------------------------------------


def test_stream_tap_splits_holds_done_and_drops_the_usage_chunk() -> None:
    usage_event = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
    raw = (
        b": keep-alive\n\n"
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"lo"}}]}\r\n\r\n'
        + usage_event
        + b"data: [DONE]\n\n"
    )
    tap = StreamTap(drop_usage_only=True)
    out: list[bytes] = []
    for i in range(0, len(raw), 7):  # arbitrary chunk boundaries
        out += tap.feed(raw[i : i + 7])
    assert tap.rest() == b""
    assert tap.done
    assert tap.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    assert tap.content_chars == 5
    joined = b"".join(out)
    assert b"[DONE]" not in joined  # held back until the ledger has the request
    assert b"usage" not in joined
    assert joined.startswith(b": keep-alive\n\n")

    keep = StreamTap(drop_usage_only=False)
    assert keep.feed(usage_event) == [usage_event]


async def test_probe_uses_health_url_when_given() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"version": "0.12.3"})

    cfg = BackendConfig(
        name="local",
        kind="openai",
        role="local",
        base_url="http://engine.invalid/v1",
        model="m",
        health_url="http://engine.invalid/api/version",
    )
    b = OpenAIBackend(cfg, None, Redactor([]), transport=httpx.MockTransport(handler))
    await b.probe()
    assert seen == ["http://engine.invalid/api/version"]
