"""Issue 9: broken clients, loopback safety, input limits, bounded upstream answers, one
transport behaviour, configuration errors in one pass, estimated tokens marked.

Each section names the hand-made case it keeps as a regression test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import llm_router.transport
import pytest
from llm_router.api import ChatRequest
from llm_router.app import Gate, create_app
from llm_router.backends import BackendFailure, OpenAIBackend
from llm_router.config import BackendConfig, ConfigError, RouterConfig, parse_config
from llm_router.redact import Redactor
from llm_router.transport import PooledTransport, StockTransport
from rawserver import RawServer, huge
from routerkit import LONG_TEXT, SECRETS, LiveRouter, asgi_client, config_dict

Client = tuple[httpx.AsyncClient, Gate]
JSON = {"content-type": "application/json"}
USER = [{"role": "user", "content": "hello"}]


def metric_statuses(text: str, endpoint: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("llm_router_requests_total{") and f'endpoint="{endpoint}"' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] = float(line.rsplit(" ", 1)[1])
    return out


def raw_exchange(port: int, data: bytes, *, read: bool = True) -> bytes:
    """Send ``data`` and close our side; return what the router answered (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        if read:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    piece = sock.recv(65536)
                except (TimeoutError, ConnectionResetError):
                    break
                if not piece:
                    break
                answer += piece
        return answer


# --- 3. broken clients ------------------------------------------------------------------------


def _wait_for_status(live: LiveRouter, endpoint: str, status: str) -> dict[str, float]:
    deadline = time.monotonic() + 5
    while True:
        seen = metric_statuses(httpx.get(f"{live.url}/metrics").text, endpoint)
        if status in seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def test_client_leaving_mid_body_ends_quietly(
    make_config: Callable[..., RouterConfig], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: ``Content-Length: 100``, 8 bytes sent, close -> no 500, one log line, 499."""
    caplog.set_level(logging.INFO)
    with LiveRouter(create_app(make_config(), SECRETS, probe=False)) as live:
        head = (
            b"POST /v1/compress HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        answer = raw_exchange(live.port, head + b'{"text":')
        seen = _wait_for_status(live, "compress", "499")
    assert b" 500 " not in answer
    assert seen == {"499": 1.0}, seen
    router_lines = [r for r in caplog.records if r.name.startswith("llm_router")]
    assert [r.getMessage() for r in router_lines] == [
        "POST /v1/compress from 127.0.0.1: the client went away before its request was complete"
    ]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    assert not any("Exception in ASGI" in r.getMessage() for r in caplog.records)


def test_malformed_chunked_body_ends_quietly(
    make_config: Callable[..., RouterConfig], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a chunked body whose chunk size is ``zz`` -> no 500 anywhere."""
    caplog.set_level(logging.INFO)
    with LiveRouter(create_app(make_config(), SECRETS, probe=False)) as live:
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        answer = raw_exchange(live.port, head + b"zz\r\n{}\r\n0\r\n\r\n")
        seen = _wait_for_status(live, "chat", "499")
    assert not answer or answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert "500" not in seen, seen
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    assert not any("Exception in ASGI" in r.getMessage() for r in caplog.records)


# --- 4. loopback safety -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:8090", True),
        ("127.0.0.1:8090", True),
        ("127.0.0.2", True),
        ("[::1]:8090", True),
        ("app.localhost", True),
        ("evil.example", False),  # a DNS-rebinding page's own name
        ("evil.example:8090", False),
        ("localhost.evil.example", False),
        ("192.168.1.10:8090", False),
        ("router.lan", True),  # configured in server.allowed_hosts
        ("ROUTER.LAN:80", True),
    ],
)
async def test_host_allow_list(
    make_config: Callable[..., RouterConfig], host: str, allowed: bool
) -> None:
    app = create_app(make_config(server={"allowed_hosts": ["router.lan"]}), SECRETS, probe=False)
    async with asgi_client(app) as client:
        r = await client.get("/v1/models", headers={"host": host})
    if allowed:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "host_not_allowed"


async def test_host_allow_list_can_be_turned_off(
    make_config: Callable[..., RouterConfig],
) -> None:
    app = create_app(make_config(server={"allowed_hosts": ["*"]}), SECRETS, probe=False)
    async with asgi_client(app) as client:
        r = await client.get("/v1/models", headers={"host": "anything.example"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, 415),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),  # what a cross-site form sends
        ("multipart/form-data; boundary=x", 415),
        ("application/json", 200),
        ("Application/JSON; charset=utf-8", 200),
        ("application/vnd.api+json", 200),
    ],
)
async def test_json_endpoints_need_a_json_content_type(
    router_client: Client, content_type: str | None, status: int
) -> None:
    client, _ = router_client
    headers = {} if content_type is None else {"content-type": content_type}
    body = json.dumps({"text": LONG_TEXT, "quality": "low"}).encode()
    r = await client.post("/v1/compress", content=body, headers=headers)
    assert r.status_code == status, r.text
    if status == 415:
        assert r.json()["error"]["code"] == "unsupported_media_type"


async def test_no_cors_unless_origins_are_configured(
    make_config: Callable[..., RouterConfig],
) -> None:
    preflight = {
        "origin": "https://page.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    app = create_app(make_config(), SECRETS, probe=False)
    async with asgi_client(app) as client:
        r = await client.options("/v1/compress", headers=preflight)
        get = await client.get("/v1/models", headers={"origin": "https://page.example"})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in get.headers
    app = create_app(
        make_config(server={"cors_origins": ["https://page.example"]}),
        SECRETS,
        probe=False,
    )
    async with asgi_client(app) as client:
        r = await client.options("/v1/compress", headers=preflight)
        other = await client.options(
            "/v1/compress", headers={**preflight, "origin": "https://other.example"}
        )
    assert r.headers["access-control-allow-origin"] == "https://page.example"
    assert "access-control-allow-origin" not in other.headers


# --- 8. input limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [[{}], [{"role": 1}], [{"role": "user", "content": {"a": 1}}], [None]],
    ids=["empty message", "role a number", "content an object", "message null"],
)
async def test_chat_messages_are_checked_before_forwarding(
    router_client: Client, local_api: Any, cloud_api: Any, messages: list[Any]
) -> None:
    """Regression: ``[{}]`` and ``[{"role": 1}]`` used to go upstream unchecked."""
    client, _ = router_client
    r = await client.post("/v1/chat/completions", json={"messages": messages})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].startswith("messages[0]")
    assert local_api.state.chat_requests() == []
    assert cloud_api.state.chat_requests() == []


def test_chat_request_keeps_unknown_keys_for_the_engine() -> None:
    req = ChatRequest.model_validate(
        {
            "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}],
            "top_k": 5,
        }
    )
    assert req.model_extra == {"top_k": 5}


def _llm_envelope(chars: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "method": "llm",
        "backend": "local",
        "prompt_version": "v1",
        "encoding": "text",
        "payload": "dense",
        "original": {"bytes": 10, "chars": chars, "sha256": "0" * 64},
    }


async def test_envelope_numbers_are_bounded(router_client: Client, local_api: Any) -> None:
    """Regression: ``original.chars`` of 4,000 digits became the upstream max_tokens."""
    client, _ = router_client
    raw = b'{"envelope": ' + json.dumps(_llm_envelope(0)).encode()
    raw = raw.replace(b'"chars": 0', b'"chars": ' + b"9" * 4000) + b"}"
    r = await client.post("/v1/reconstruct", content=raw, headers=JSON)
    assert r.status_code == 400, r.text
    assert "envelope.original.chars" in r.json()["error"]["message"]
    # Within JSON's safe integers but beyond what the router would ever expand to.
    r = await client.post("/v1/reconstruct", json={"envelope": _llm_envelope(2**40)})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "decompressed_too_large"
    assert local_api.state.chat_requests() == []


async def test_upstream_4xx_is_the_same_on_every_endpoint(
    router_client: Client, local_api: Any, cloud_api: Any
) -> None:
    """Regression: an upstream 400 gave 400 on chat but 503 on reconstruct."""
    client, _ = router_client
    local_api.state.mode = cloud_api.state.mode = "http_400"
    chat = await client.post("/v1/chat/completions", json={"messages": USER})
    rec = await client.post("/v1/reconstruct", json={"envelope": _llm_envelope(10)})
    for r in (chat, rec):
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "upstream_rejected"


# --- 5. bounded upstream answers ----------------------------------------------------------


BIG = 200 << 20  # 200 MiB
CAP = 1 << 20


def _reply_json_close(head: bytes, body: bytes) -> Iterable[bytes]:
    # No Content-Length: the body runs until the server closes, so only counting can stop it.
    yield b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
    yield b'{"choices": [{"message": {"content": "'
    yield from huge(BIG)


def _reply_json_length(head: bytes, body: bytes) -> Iterable[bytes]:
    yield (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % BIG)
    yield from huge(BIG)


def _reply_sse(head: bytes, body: bytes) -> Iterable[bytes]:
    yield b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    event = b'data: {"choices": [{"delta": {"content": "' + b"y" * 4000 + b'"}}]}\n\n'
    for _ in range(BIG // len(event)):
        yield event


def _one_backend(tmp_path: Path, url: str) -> RouterConfig:
    raw = config_dict(tmp_path, url, url)
    raw["backends"] = [
        {
            "name": "local",
            "kind": "openai",
            "role": "local",
            "base_url": url,
            "model": "m",
            "timeout_s": 20,
            "max_response_bytes": CAP,
        }
    ]
    return parse_config(raw)


def _transports(kind: str) -> dict[str, httpx.AsyncBaseTransport] | None:
    return None if kind == "lean" else {"local": StockTransport(max_connections=4)}


@pytest.mark.parametrize("kind", ["lean", "httpx"])
@pytest.mark.parametrize(
    ("reply", "stream"),
    [(_reply_json_close, False), (_reply_json_length, False), (_reply_sse, True)],
    ids=["until-close", "content-length", "sse"],
)
async def test_a_200_mib_upstream_answer_is_cut_off_with_bounded_memory(
    tmp_path: Path, kind: str, reply: Any, stream: bool
) -> None:
    with RawServer(reply) as upstream:
        cfg = _one_backend(tmp_path, upstream.base_url)
        app = create_app(cfg, SECRETS, probe=False, transports=_transports(kind))
        async with asgi_client(app) as client:
            tracemalloc.start()
            try:
                started = time.monotonic()
                r = await asyncio.wait_for(
                    client.post(
                        "/v1/chat/completions",
                        json={"messages": USER, "stream": stream},
                    ),
                    60,
                )
                elapsed = time.monotonic() - started
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        sent = upstream.sent
    assert peak < 24 << 20, f"peak {peak >> 20} MiB while relaying"
    assert elapsed < 30
    assert sent < BIG // 2, "the router kept reading after the cap"
    if stream:
        assert r.status_code == 200
        events = [e for e in r.text.split("\n\n") if e]
        error = json.loads(events[-1].removeprefix("data: "))["error"]
        assert error["code"] == "response_too_large"
    else:
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["code"] == "upstream_response_too_large"
        assert "max_response_bytes" in error["message"]


# --- 6. one transport behaviour -----------------------------------------------------------


def _head(extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra + b"\r\n"


FAILURES: dict[str, Callable[[bytes, bytes], Iterable[bytes]]] = {
    "closed before answering": lambda head, body: [],
    "body cut short": lambda head, body: [_head(b"content-length: 100\r\n"), b'{"choices": '],
    "bad chunk size": lambda head, body: [
        _head(b"transfer-encoding: chunked\r\n"),
        b"zz\r\n{}\r\n",
    ],
    "chunked body cut short": lambda head, body: [
        _head(b"transfer-encoding: chunked\r\n"),
        b'10\r\n{"choi',
    ],
    "garbage status line": lambda head, body: [b"HELLO THERE\r\n\r\n"],
    "stalls": lambda head, body: [_head(b"content-length: 10\r\n"), b"<wait>", b"<wait>"],
}


def _backend(url: str, transport: httpx.AsyncBaseTransport) -> OpenAIBackend:
    cfg = BackendConfig(
        name="x", kind="openai", role="local", base_url=url, model="m", timeout_s=0.5
    )
    return OpenAIBackend(cfg, None, Redactor([]), transport=transport)


async def _failure(url: str, transport: httpx.AsyncBaseTransport, stream: bool) -> tuple[str, str]:
    backend = _backend(url, transport)
    call = backend.open_stream if stream else backend.chat
    try:
        with pytest.raises(BackendFailure) as caught:
            await call({"messages": USER, "stream": stream})
    finally:
        await backend.aclose()
    return caught.value.reason, caught.value.detail


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_both_transports_report_a_failure_in_the_same_words(
    failure: str, stream: bool
) -> None:
    with RawServer(FAILURES[failure]) as server:
        lean = await _failure(server.base_url, PooledTransport(max_connections=2), stream)
        stock = await _failure(server.base_url, StockTransport(max_connections=2), stream)
    assert lean == stock
    expected = {"timeout"} if failure == "stalls" else {"protocol_error", "malformed"}
    assert lean[0] in expected


async def test_both_transports_report_a_refused_connection_alike() -> None:
    from routerkit import closed_port

    url = f"http://127.0.0.1:{closed_port()}/v1"
    lean = await _failure(url, PooledTransport(max_connections=2), False)
    stock = await _failure(url, StockTransport(max_connections=2), False)
    assert lean == stock == ("connect_error", "cannot connect: connection refused")


def test_the_lean_transport_uses_no_private_attributes() -> None:
    source = Path(llm_router.transport.__file__).read_text()
    assert "._buffer" not in source
    assert "getattr(" not in source


# --- 7. configuration errors ----------------------------------------------------------------


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_a_wrong_backend_is_reported_once_at_its_key() -> None:
    """Regression: a wrong backend also printed 'backends: must not be empty'."""
    problems = _problems({"backends": [{"name": "x", "kind": "foo", "role": "local"}]})
    assert problems == ["backends[0].kind: must be one of 'openai' or 'zstd'"]


def test_every_problem_is_reported_in_one_pass() -> None:
    raw = {
        "server": {"port": 0, "token": "inline"},
        "routing": {"cooldown_s": -1},
        "backends": [
            {"name": "a", "kind": "openai", "role": "local", "base_url": "http://h:1"},
            {"name": "a", "kind": "zstd", "role": "fallback", "level": 99},
        ],
    }
    problems = _problems(raw)
    assert sorted(p.split(":", 1)[0] for p in problems) == sorted(
        [
            "server.token",
            "server.port",
            "routing.cooldown_s",
            "backends[0].base_url",
            "backends[0].model",
            "backends[1].level",
            "backends[1].name",
        ]
    ), problems
    assert any("must end in /v1" in p for p in problems)
    assert not any("inline" in p for p in problems)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:11434/v1", True),
        ("http://127.0.0.1:11434/v1/", True),
        ("https://gateway.example/api/v1", True),
        ("http://127.0.0.1:11434", False),
        ("http://127.0.0.1:11434/api", False),
    ],
)
def test_base_url_must_end_in_v1(url: str, ok: bool) -> None:
    raw = {"backends": [{"name": "a", "kind": "openai", "role": "local", "base_url": url,
                         "model": "m"}]}  # fmt: skip
    if ok:
        parse_config(raw)
    else:
        assert _problems(raw) == [
            "backends[0].base_url: must end in /v1, the root of the OpenAI-compatible API "
            "(e.g. http://127.0.0.1:11434/v1)"
        ]


# --- 9. estimated token counts --------------------------------------------------------------


def _reply_without_usage(head: bytes, body: bytes) -> Iterable[bytes]:
    answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hi!"}}]})
    yield _head(b"content-length: %d\r\n" % len(answer)) + answer.encode()


async def test_estimated_tokens_are_marked_in_the_response_and_the_cost_report(
    tmp_path: Path,
) -> None:
    with RawServer(_reply_without_usage) as upstream:
        app = create_app(_one_backend(tmp_path, upstream.base_url), SECRETS, probe=False)
        async with asgi_client(app) as client:
            chat = await client.post("/v1/chat/completions", json={"messages": USER})
            compress = await client.post("/v1/compress", json={"text": "x", "backend": "zstd"})
            cost = (await client.get("/v1/cost")).json()
    assert chat.status_code == 200, chat.text
    assert compress.json()["tokens"]["estimated"] is False  # zstd: no tokens at all
    totals = cost["totals"]
    assert totals["tokens"] > 0
    assert totals["estimated_tokens"] == totals["tokens"]
