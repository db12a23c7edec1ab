"""Bad input gets a 4xx JSON error that names the problem, never a 500, and no ledger entry."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import zstandard
from llm_router.app import Gate, create_app
from llm_router.config import RouterConfig
from routerkit import LONG_TEXT, SECRETS, LiveRouter, asgi_client

Client = tuple[httpx.AsyncClient, Gate]
LIMIT = 4096
JSON = {"content-type": "application/json"}
DECOMPRESSED_LIMIT = 64 * 1024


@pytest.fixture
async def small_router(make_config: Callable[..., RouterConfig]):
    cfg = make_config(
        server={"max_body_bytes": LIMIT, "max_decompressed_bytes": DECOMPRESSED_LIMIT}
    )
    app = create_app(cfg, SECRETS, probe=False)
    async with asgi_client(app) as client:
        yield client, app


def zstd_envelope(data: bytes, **original: Any) -> dict[str, Any]:
    frame = zstandard.ZstdCompressor(level=3).compress(data)
    return {
        "version": 1,
        "method": "zstd",
        "backend": "zstd",
        "encoding": "base64",
        "payload": base64.b64encode(frame).decode(),
        "original": {
            "bytes": len(data),
            "chars": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            **original,
        },
    }


def assert_refused(r: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == code, error
    assert mentions in error["message"], error


def ledger_count(app: Gate) -> int:
    conn = sqlite3.connect(app.service.cfg.ledger.path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
    finally:
        conn.close()


BODY_CASES = [
    # (name, raw body, status, code, the message names)
    ("malformed json", b'{"text": "abc"', 400, "invalid_json", "not valid JSON"),
    ("trailing garbage", b'{"text": "abc"} x', 400, "invalid_json", "not valid JSON"),
    ("empty body", b"", 400, "empty_body", "empty"),
    ("not an object", b'["text"]', 400, "invalid_request", "JSON object"),
    ("invalid utf-8", b'{"text": "caf\xe9"}', 400, "invalid_utf8", "UTF-8"),
    ("lone surrogate", b'{"text": "\\ud800"}', 400, "invalid_json", "JSON"),
    ("missing text", b'{"quality": "low"}', 400, "invalid_request", "text: is required"),
    ("text wrong type", b'{"text": 42}', 400, "invalid_request", "text: must be a string"),
    ("empty text", b'{"text": ""}', 400, "invalid_request", "text: must not be empty"),
    ("bad quality", b'{"text": "a", "quality": "best"}', 400, "invalid_request", "quality"),
    ("verify wrong type", b'{"text": "a", "verify": "yes"}', 400, "invalid_request", "verify"),
    ("unknown field", b'{"text": "a", "colour": 1}', 400, "invalid_request", "colour: unknown key"),
    ("nan", b'{"text": "a", "verify": NaN}', 400, "invalid_json", "JSON"),
    ("unknown backend", b'{"text": "a", "backend": "gpu9"}', 400, "unknown_backend", "gpu9"),
]


@pytest.mark.parametrize(
    ("raw", "status", "code", "mentions"),
    [case[1:] for case in BODY_CASES],
    ids=[case[0] for case in BODY_CASES],
)
async def test_compress_rejects(small_router: Client, raw, status, code, mentions) -> None:
    client, app = small_router
    r = await client.post("/v1/compress", content=raw, headers=JSON)
    assert_refused(r, status, code, mentions)
    assert ledger_count(app) == 0


ENVELOPE_CASES = [
    ("not an object", "x", 400, "invalid_envelope", "envelope: must be an object"),
    ("unknown version", {"version": 2}, 400, "unsupported_envelope_version", "version 2"),
    ("version as text", {"version": "1"}, 400, "invalid_envelope", "envelope.version"),
    (
        "missing payload",
        {"version": 1, "method": "zstd", "backend": "zstd", "encoding": "base64",
         "original": {"bytes": 1, "chars": 1, "sha256": "0" * 64}},
        400, "invalid_envelope", "envelope.payload: is required",
    ),
    (
        "wrong encoding for method",
        {"version": 1, "method": "zstd", "backend": "zstd", "encoding": "text", "payload": "x",
         "original": {"bytes": 1, "chars": 1, "sha256": "0" * 64}},
        400, "invalid_envelope", "needs encoding base64",
    ),
    (
        "bad hash",
        {"version": 1, "method": "llm", "backend": "local", "prompt_version": "v1",
         "encoding": "text", "payload": "x", "original": {"bytes": 1, "chars": 1, "sha256": "xyz"}},
        400, "invalid_envelope", "envelope.original.sha256",
    ),
    (
        "unknown prompt version",
        {"version": 1, "method": "llm", "backend": "local", "prompt_version": "v99",
         "encoding": "text", "payload": "x",
         "original": {"bytes": 1, "chars": 1, "sha256": "0" * 64}},
        400, "unknown_prompt_version", "v99",
    ),
    (
        "not base64",
        {**zstd_envelope(b"hello"), "payload": "!!!not base64!!!"},
        400, "invalid_envelope", "not valid base64",
    ),
    (
        "not a zstd frame",
        {**zstd_envelope(b"hello"), "payload": base64.b64encode(b"plain bytes").decode()},
        400, "invalid_envelope", "not a valid zstd frame",
    ),
    (
        "checksum mismatch",
        zstd_envelope(b"hello", sha256="0" * 64),
        422, "checksum_mismatch", "sha256",
    ),
    (
        "decompresses to invalid utf-8",
        zstd_envelope(b"caf\xe9 \xff\xfe"),
        422, "invalid_utf8", "UTF-8",
    ),
    (
        "declared size over the limit",
        zstd_envelope(b"a" * 100, bytes=DECOMPRESSED_LIMIT + 1),
        413, "decompressed_too_large", "max_decompressed_bytes",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("envelope", "status", "code", "mentions"),
    [case[1:] for case in ENVELOPE_CASES],
    ids=[case[0] for case in ENVELOPE_CASES],
)
async def test_reconstruct_rejects(small_router: Client, envelope, status, code, mentions):
    client, app = small_router
    r = await client.post("/v1/reconstruct", json={"envelope": envelope})
    assert_refused(r, status, code, mentions)
    assert ledger_count(app) == 0


def bomb(size: int) -> bytes:
    """A small zstd frame that expands to ``size`` zero bytes."""
    compressor = zstandard.ZstdCompressor(level=19, write_content_size=False)
    chunk = b"\0" * (1 << 20)
    obj = compressor.compressobj()
    out = b"".join(obj.compress(chunk) for _ in range(size // len(chunk)))
    return out + obj.flush()


async def test_zstd_bomb_is_refused_without_expanding_it(small_router: Client) -> None:
    client, app = small_router
    frame = bomb(32 << 20)  # 32 MiB of zeros in about 1 KB, no size in the header
    assert len(base64.b64encode(frame)) < LIMIT - 300
    envelope = {
        "version": 1,
        "method": "zstd",
        "backend": "zstd",
        "encoding": "base64",
        "payload": base64.b64encode(frame).decode(),
        "original": {"bytes": 10, "chars": 10, "sha256": "0" * 64},  # lies about its size
    }
    r = await client.post("/v1/reconstruct", json={"envelope": envelope})
    assert_refused(r, 413, "decompressed_too_large", "exceeds the limit")
    assert ledger_count(app) == 0


async def test_oversized_body_is_refused_by_its_content_length(small_router: Client) -> None:
    client, app = small_router
    r = await client.post("/v1/compress", json={"text": "x" * (LIMIT + 10)})
    assert_refused(r, 413, "body_too_large", f"{LIMIT} bytes")
    assert ledger_count(app) == 0


async def test_oversized_chunked_body_is_counted_while_read(small_router: Client) -> None:
    client, app = small_router
    sent = 0

    async def body():
        nonlocal sent
        yield b'{"text": "'
        for _ in range(100):  # far more than the limit, in 1 KiB pieces, no Content-Length
            sent += 1
            yield b"x" * 1024
        yield b'"}'

    r = await client.post("/v1/compress", content=body(), headers=JSON)
    assert_refused(r, 413, "body_too_large", "max_body_bytes")
    assert ledger_count(app) == 0


def test_oversized_bodies_over_real_http(make_config: Callable[..., RouterConfig]) -> None:
    """The same two limits through uvicorn: a lying client and a chunked one."""
    cfg = make_config(server={"max_body_bytes": LIMIT})
    with LiveRouter(create_app(cfg, SECRETS, probe=False)) as live, httpx.Client() as client:
        r = client.post(f"{live.url}/v1/compress", json={"text": "x" * (LIMIT * 4)})
        assert_refused(r, 413, "body_too_large")

        def chunks():
            yield b'{"text": "'
            for _ in range(64):
                yield b"y" * 1024
            yield b'"}'

        r = client.post(f"{live.url}/v1/compress", content=chunks(), headers=JSON)
        assert_refused(r, 413, "body_too_large")
        ok = client.post(f"{live.url}/v1/compress", json={"text": LONG_TEXT})
        assert ok.status_code == 200


CHAT_CASES = [
    ("no messages", {"model": "auto"}, "messages: is required"),
    ("empty messages", {"messages": []}, "messages: must not be empty"),
    ("message not object", {"messages": ["hi"]}, "messages[0]: must be a mapping"),
    ("empty message", {"messages": [{}]}, "messages[0].role: is required"),
    ("role not a string", {"messages": [{"role": 1}]}, "messages[0].role: must be one of"),
    ("unknown role", {"messages": [{"role": "admin", "content": "x"}]}, "messages[0].role"),
    ("content a number", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("model not string", {"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
    (
        "stream not bool",
        {"stream": "yes", "messages": [{"role": "user", "content": "x"}]},
        "stream",
    ),
]


@pytest.mark.parametrize(
    ("body", "mentions"), [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES]
)
async def test_chat_rejects(small_router: Client, local_api, body, mentions) -> None:
    client, app = small_router
    r = await client.post("/v1/chat/completions", json=body)
    assert_refused(r, 400, "invalid_request", mentions)
    assert local_api.state.chat_requests() == []
    assert ledger_count(app) == 0


async def test_unknown_paths_and_methods_are_json(small_router: Client) -> None:
    client, _ = small_router
    assert_refused(await client.get("/v2/nothing"), 404, "not_found")
    assert_refused(await client.get("/v1/compress"), 405, "method_not_allowed")
