"""Issue 9 items 1 and 2: the published contract (openapi.json) and a fuzz run against it.

The fuzz run is Hypothesis driving the live router (uvicorn, a real socket) with a stand-in
engine behind it: request bodies that the committed document's request schemas accept (each is
checked against them), near misses, arbitrary JSON, raw bytes, wrong content types and hosts.
Every answer must be below 500 and match the document's schema for that path and status.
Bounded: a fixed number of cases (FUZZ_CASES, at least 2,000) and a wall-clock stop.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_router.api import openapi, openapi_text
from llm_router.app import ENDPOINTS, create_app
from llm_router.config import RouterConfig, parse_config
from rawserver import RawServer
from routerkit import ROOT, SECRETS, LiveRouter, config_dict

COMMITTED = ROOT / "files" / "llm_router" / "openapi.json"
DOC: dict[str, Any] = json.loads(COMMITTED.read_text())
FUZZ_CASES = int(os.environ.get("LLM_ROUTER_FUZZ_CASES", "2000"))
FUZZ_SECONDS = 600  # a hard stop: a slow machine fails the count check, it does not hang


# --- 1. the contract --------------------------------------------------------------------------


def test_committed_document_matches_the_models() -> None:
    """Fails when a model changes and openapi.json is not regenerated:
    ``llm-router openapi > files/llm_router/openapi.json``."""
    assert COMMITTED.read_text() == openapi_text()


async def test_served_document_is_the_committed_one(router_client: Any) -> None:
    client, _ = router_client
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == DOC


def test_the_cli_prints_the_committed_document(capsys: pytest.CaptureFixture[str]) -> None:
    from llm_router.cli import main

    assert main(["openapi"]) == 0
    assert capsys.readouterr().out == COMMITTED.read_text()


def test_document_covers_every_endpoint_and_is_valid_json_schema() -> None:
    assert DOC["openapi"].startswith("3.1")
    assert set(DOC["paths"]) == set(ENDPOINTS)
    for schema in DOC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    chat = DOC["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(chat) == {"application/json", "text/event-stream"}
    for path, item in DOC["paths"].items():
        for op in item.values():
            if "requestBody" in op:
                for status in ("400", "413", "415"):
                    assert status in op["responses"], (path, status)
            assert "403" in op["responses"], path


def test_the_request_models_are_the_ones_in_the_document() -> None:
    """The document is built from the models the handlers validate with, not a copy."""
    from llm_router import app as app_module

    doc = openapi()["components"]["schemas"]
    for name in ("CompressRequest", "ReconstructRequest", "ChatRequest"):
        model = getattr(app_module, name)
        assert doc[name]["title"] == model.__name__


# --- helpers: which schema an answer must match ------------------------------------------------


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema, "components": DOC["components"]})


def response_problem(method: str, path: str, r: httpx.Response) -> str | None:
    """None when ``r`` is what the document promises for it, else what is wrong."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    documented = responses.get(str(r.status_code))
    if documented is None:
        return f"status {r.status_code} is not documented for {method} {path}: {r.text[:200]}"
    media = r.headers.get("content-type", "").split(";")[0]
    content = documented["content"]
    if media not in content:
        return f"content type {media!r} is not documented for {r.status_code}"
    schema = content[media]["schema"]
    if media == "application/json":
        errors = list(_validator(schema).iter_errors(r.json()))
        if errors:
            return f"{method} {path} {r.status_code}: {errors[0].message} at {errors[0].json_path}"
    elif media == "text/event-stream":
        for event in r.text.split("\n\n"):
            if event and not event.startswith(("data: ", ":")):
                return f"not a server-sent event: {event[:80]!r}"
    return None


# --- the stand-in engine: answers every chat request, streamed or not -------------------------


def _engine(head: bytes, body: bytes) -> Iterable[bytes]:
    try:
        stream = json.loads(body).get("stream") is True
    except (ValueError, AttributeError):
        stream = False
    if head.startswith(b"GET"):
        answer = b'{"object": "list", "data": []}'
        yield _reply(b"application/json", answer)
    elif stream:
        chunk = {"choices": [{"index": 0, "delta": {"content": "ok"}}]}
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
        events = (
            b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in (chunk, usage))
            + b"data: [DONE]\n\n"
        )
        yield _reply(b"text/event-stream", events)
    else:
        answer = json.dumps(
            {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }
        ).encode()
        yield _reply(b"application/json", answer)


def _reply(media: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: " + media
        + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


def _config(tmp_path: Path, url: str) -> RouterConfig:
    raw = config_dict(tmp_path, url, url)
    for backend in raw["backends"]:
        backend.pop("api_key_env", None)
        backend["timeout_s"] = 5
    raw["server"]["max_body_bytes"] = 65536
    return parse_config(raw)


# --- 2. the fuzz run --------------------------------------------------------------------------

POSTS = {
    "/v1/compress": "CompressRequest",
    "/v1/reconstruct": "ReconstructRequest",
    "/v1/chat/completions": "ChatRequest",
}
GETS = ["/v1/models", "/v1/cost", "/healthz", "/readyz", "/metrics", "/openapi.json"]


REQUEST_VALIDATORS = {
    path: _validator({"$ref": f"#/components/schemas/{name}"}) for path, name in POSTS.items()
}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
words = st.text(st.characters(codec="utf-8"), min_size=1, max_size=80)
names = st.sampled_from(["local", "cloud", "zstd", "local-model", "auto", "nope"])


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


compress_bodies = st.builds(
    lambda text, rest: {"text": text, **rest},
    words,
    _optional(
        quality=st.sampled_from(["low", "normal", "high"]),
        verify=st.none() | st.booleans(),
        backend=st.none() | names,
    ),
)


@st.composite
def envelopes(draw: Callable[..., Any]) -> dict[str, Any]:
    text = draw(words)
    data = text.encode()
    original = {
        "bytes": draw(st.just(len(data)) | st.integers(0, 2**53 - 1)),
        "chars": draw(st.just(len(text)) | st.integers(0, 2**53 - 1)),
        "sha256": draw(st.just(hashlib.sha256(data).hexdigest()) | st.just("0" * 64)),
    }
    if draw(st.booleans()):
        frame = zstandard.ZstdCompressor(level=1).compress(data)
        payload = draw(st.just(base64.b64encode(frame).decode()) | st.just("AAAA"))
        return {"version": 1, "method": "zstd", "backend": draw(names), "encoding": "base64",
                "payload": payload, "original": original}  # fmt: skip
    return {"version": 1, "method": "llm", "backend": draw(names),
            "prompt_version": draw(st.sampled_from(["v1", "v0"])), "encoding": "text",
            "payload": text, "original": original, "model": draw(st.none() | names)}  # fmt: skip


messages = st.lists(
    st.builds(
        lambda role, rest: {"role": role, **rest},
        st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
        _optional(
            content=st.none() | words | st.just([{"type": "text", "text": "hi"}]),
            name=st.text(max_size=8),
        ),
    ),
    min_size=1,
    max_size=3,
)
chat_bodies = st.builds(
    lambda msgs, rest: {"messages": msgs, **rest},
    messages,
    _optional(
        model=st.none() | names,
        stream=st.booleans(),
        stream_options=st.none() | st.just({"include_usage": True}),
        max_tokens=st.integers(1, 4096),
        temperature=st.floats(0, 2),
    ),
)
VALID = {
    "/v1/compress": compress_bodies,
    "/v1/reconstruct": st.builds(lambda e: {"envelope": e}, envelopes()),
    "/v1/chat/completions": chat_bodies,
}


@st.composite
def post_bodies(draw: Callable[..., Any], path: str) -> bytes:
    """Mostly documents the schema accepts (they reach the engine), some near misses."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "mutated", "any-json", "bytes"]))
    if kind == "bytes":
        return bytes(draw(st.binary(max_size=64)))
    if kind == "any-json":
        return json.dumps(draw(json_values)).encode()
    body = draw(VALID[path])
    if kind == "mutated":
        key = draw(st.sampled_from(sorted(body)))
        body[key] = draw(json_values)
    else:  # the generator itself must follow the contract
        errors = list(REQUEST_VALIDATORS[path].iter_errors(body))
        assert not errors, f"generated an invalid {path} body: {errors[0].message}"
    return json.dumps(body).encode()


@st.composite
def requests(draw: Callable[..., Any]) -> tuple[str, str, dict[str, str], bytes | None]:
    headers = {
        "host": draw(st.sampled_from(["127.0.0.1:8090"] * 4 + ["localhost", "evil.example"]))
    }
    if draw(st.integers(0, 4)) == 0:
        method, path = "GET", draw(st.sampled_from(GETS))
        if path == "/v1/cost":
            days = st.sampled_from(["2026-01-01", "2026-13-01", "yesterday", ""])
            query = {k: draw(days) for k in draw(st.sets(st.sampled_from(["since", "until"])))}
            path += "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return method, path, headers, None
    path = draw(st.sampled_from(sorted(POSTS)))
    content_type = draw(
        st.sampled_from(["application/json"] * 6 + ["text/plain", None, "application/json; x=1"])
    )
    if content_type is not None:
        headers["content-type"] = content_type
    if path == "/v1/chat/completions" and draw(st.booleans()):
        headers["x-llm-router-quality"] = draw(st.sampled_from(["low", "high", "best"]))
    return "POST", path, headers, draw(post_bodies(path))


@pytest.mark.slow
def test_fuzz_the_live_router_against_its_contract(tmp_path: Path) -> None:
    seen: dict[int, int] = {}
    cases = 0
    deadline = time.monotonic() + FUZZ_SECONDS
    with (
        RawServer(_engine) as engine,
        LiveRouter(create_app(_config(tmp_path, engine.base_url), SECRETS, probe=False)) as live,
        httpx.Client(base_url=live.url, timeout=10) as client,
    ):

        @settings(
            max_examples=FUZZ_CASES,
            deadline=None,
            database=None,
            derandomize=True,  # the same cases every run: a failure reproduces
            suppress_health_check=list(HealthCheck),
        )
        @given(requests())
        def case(request: tuple[str, str, dict[str, str], bytes | None]) -> None:
            nonlocal cases
            if time.monotonic() > deadline:
                return
            method, path, headers, body = request
            r = client.request(method, path, headers=headers, content=body)
            cases += 1
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, f"{method} {path} {body!r:.200} -> {r.text[:300]}"
            problem = response_problem(method, path.split("?")[0], r)
            assert problem is None, problem

        case()
    print(f"fuzz: {cases} cases, statuses {dict(sorted(seen.items()))}")
    assert cases >= FUZZ_CASES, f"only {cases} cases in {FUZZ_SECONDS}s"
    assert seen.get(200, 0) > FUZZ_CASES // 10, "too few requests got through to the engine"
