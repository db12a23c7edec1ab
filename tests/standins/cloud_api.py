"""STAND-IN for a cloud OpenAI-compatible chat-completions API. Tests only; never shipped.

It follows the shape of OpenAI's ``POST /v1/chat/completions`` (``chat.completion`` objects,
``chat.completion.chunk`` server-sent events ending in ``data: [DONE]``, ``usage`` with
``prompt_tokens``/``completion_tokens``, ``stream_options.include_usage``) and
``GET /v1/models``, and can be told to fail in the ways a real API fails:

=====================  ===================================================================
mode                   behaviour
=====================  ===================================================================
``ok``                 answers normally
``http_500``           HTTP 500 with an OpenAI-style error body
``http_400``           HTTP 400 (the request itself is refused)
``http_429``           HTTP 429 rate limited
``echo_auth_500``      HTTP 500 whose body repeats the Authorization header it received
                       (an upstream that leaks: the router must redact it)
``malformed``          HTTP 200 with a body that is not JSON
``no_choices``         HTTP 200 with JSON that has no ``choices``
``timeout``            waits ``delay_s`` before answering anything
``slow_first_byte``    streams: sends headers, then waits ``delay_s`` before the first event
``stall_mid_stream``   streams: sends one event, then waits ``delay_s``
``not_sse``            streams: 200 ``text/event-stream`` whose body is not SSE
=====================  ===================================================================

Connection refused is not a mode: point the router at :func:`closed_port`.

Its "model" is deterministic so tests can reason about quality: asked to compress (the
router's compression prompt), it stores the text and answers ``ref:N``; asked to expand
``ref:N`` it returns the stored text (any other note comes back as it is), or with
``lossy = True`` the text with its digits changed, which fails the router's quality check.
Anything else gets ``stand-in reply: ...``.

Run it by hand: ``python tests/standins/cloud_api.py --port 8045 --mode ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MODES = (
    "ok",
    "http_500",
    "http_400",
    "http_429",
    "echo_auth_500",
    "malformed",
    "no_choices",
    "timeout",
    "slow_first_byte",
    "stall_mid_stream",
    "not_sse",
)
_REF = re.compile(r"ref:(\d+)")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StandInState:
    mode: str = "ok"
    model: str = "standin-model"
    delay_s: float = 3.0
    lossy: bool = False
    health_ok: bool = True
    api_key: str | None = None  # when set, requests without this bearer key get 401
    received: list[Received] = field(default_factory=list)
    store: dict[int, str] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def chat_requests(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("/chat/completions")]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status)


def _answer(state: StandInState, messages: list[dict[str, Any]]) -> str:
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    user = str(messages[-1].get("content", "")) if messages else ""
    if "compress text" in system:
        key = next(state.counter)
        state.store[key] = user
        return f"ref:{key}"
    if "compressed note" in system:
        match = _REF.search(user)
        original = state.store.get(int(match.group(1)), user) if match else user
        if state.lossy:
            return re.sub(r"\d", "7", original) + " (and some invented detail)"
        return original
    return "stand-in reply: " + user[:60]


def _completion(state: StandInState, text: str, prompt: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-standin-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": state.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": _tokens(prompt),
            "completion_tokens": _tokens(text),
            "total_tokens": _tokens(prompt) + _tokens(text),
        },
    }


def _chunk(state: StandInState, delta: dict[str, Any], finish: str | None) -> bytes:
    body = {
        "id": "chatcmpl-standin-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": state.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def _events(
    state: StandInState, mode: str, text: str, prompt: str, usage: bool
) -> AsyncIterator[bytes]:
    if mode == "slow_first_byte":
        await asyncio.sleep(state.delay_s)
    yield _chunk(state, {"role": "assistant", "content": ""}, None)
    if mode == "stall_mid_stream":
        await asyncio.sleep(state.delay_s)
    words = text.split(" ")
    for i, word in enumerate(words):
        yield _chunk(state, {"content": word if i == 0 else " " + word}, None)
    yield _chunk(state, {}, "stop")
    if usage:
        body = {
            "id": "chatcmpl-standin-stream",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": state.model,
            "choices": [],
            "usage": {
                "prompt_tokens": _tokens(prompt),
                "completion_tokens": _tokens(text),
                "total_tokens": _tokens(prompt) + _tokens(text),
            },
        }
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def build_app(state: StandInState) -> Starlette:
    def authorised(request: Request) -> bool:
        return state.api_key is None or request.headers.get("authorization") == (
            f"Bearer {state.api_key}"
        )

    async def models(request: Request) -> Response:
        state.received.append(Received(request.url.path, dict(request.headers), None))
        if not state.health_ok:
            return _error(503, "stand-in is down", "server_error")
        if not authorised(request):
            return _error(401, "invalid api key", "invalid_request_error")
        return JSONResponse(
            {"object": "list", "data": [{"id": state.model, "object": "model", "owned_by": "x"}]}
        )

    async def chat(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        state.received.append(Received(request.url.path, dict(request.headers), body))
        mode = state.mode
        if not authorised(request):
            return _error(401, "invalid api key", "invalid_request_error")
        if mode == "timeout":
            await asyncio.sleep(state.delay_s)
        if mode == "http_500":
            return _error(500, "stand-in internal error", "server_error")
        if mode == "http_400":
            return _error(400, "stand-in refuses this request", "invalid_request_error")
        if mode == "http_429":
            return _error(429, "stand-in rate limit", "rate_limit_error")
        if mode == "echo_auth_500":
            seen = request.headers.get("authorization", "")
            return _error(500, f"upstream failed; you sent {seen}", "server_error")
        if mode == "malformed":
            return PlainTextResponse("<html>502 bad gateway</html>", 200)
        if mode == "no_choices":
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": []})
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "messages is required", "invalid_request_error")
        messages = body["messages"]
        prompt = " ".join(str(m.get("content", "")) for m in messages)
        text = _answer(state, messages)
        if body.get("stream"):
            if mode == "not_sse":
                return Response(b"this is not an event stream", media_type="text/event-stream")
            opts = body.get("stream_options") or {}
            usage = bool(opts.get("include_usage"))
            return StreamingResponse(
                _events(state, mode, text, prompt, usage), media_type="text/event-stream"
            )
        return JSONResponse(_completion(state, text, prompt))

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


def closed_port() -> int:
    """A loopback port with nothing listening on it (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


class CloudStandIn:
    """Runs the stand-in on a free loopback port in a background thread."""

    def __init__(self, **state: Any) -> None:
        self.state = StandInState(**state)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.state),
            log_level="warning",
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="cloud-standin", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self) -> CloudStandIn:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("cloud stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> CloudStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="stand-in cloud chat-completions API (tests only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8045)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=3.0)
    args = parser.parse_args()
    state = StandInState(mode=args.mode, delay_s=args.delay)
    uvicorn.run(build_app(state), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
