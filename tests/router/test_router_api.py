"""The HTTP API in-process (ASGI), with stand-in engines on loopback."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from llm_router.app import Gate, create_app
from llm_router.config import RouterConfig
from routerkit import API_KEY, LONG_TEXT, SECRETS, SECRETS_WITH_TOKEN, TOKEN, asgi_client

Client = tuple[httpx.AsyncClient, Gate]


def ledger_rows(app: Gate, table: str = "requests") -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(app.service.cfg.ledger.path)
    try:
        return conn.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        conn.close()


def outcomes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["backend"], a["outcome"]) for a in body["attempts"]]


# --- compress and reconstruct ----------------------------------------------------------------


async def test_compress_uses_local_first_and_round_trips(router_client: Client, local_api) -> None:
    client, app = router_client
    r = await client.post("/v1/compress", json={"text": LONG_TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "local"
    assert body["method"] == "llm"
    assert body["envelope"]["payload"].startswith("ref:")
    assert body["quality"]["verified"] is True
    assert body["quality"]["score"] == 1.0
    assert body["tokens"]["total"] > 0
    assert body["sizes"]["original_bytes"] == len(LONG_TEXT.encode())
    assert body["ratio"] > 10
    assert outcomes(body) == [("local", "ok")]
    # verification means two calls: compress and expand
    assert len(local_api.state.chat_requests()) == 2

    r = await client.post("/v1/reconstruct", json={"envelope": body["envelope"]})
    assert r.status_code == 200, r.text
    back = r.json()
    assert back["text"] == LONG_TEXT
    assert back["exact"] is True
    assert back["backend"] == "local"
    assert len(ledger_rows(app)) == 2


async def test_compress_request_carries_the_prompt_and_a_token_budget(
    router_client: Client, local_api
) -> None:
    client, _ = router_client
    await client.post("/v1/compress", json={"text": LONG_TEXT, "verify": False})
    sent = local_api.state.chat_requests()[0].body
    assert sent["model"] == "local-model"
    assert sent["temperature"] == 0
    assert 0 < sent["max_tokens"] <= len(LONG_TEXT)
    assert sent["messages"][0]["role"] == "system"
    assert "name, number, date" in sent["messages"][0]["content"]
    assert sent["messages"][-1]["content"] == LONG_TEXT


async def test_low_quality_skips_verification(router_client: Client, local_api) -> None:
    client, _ = router_client
    r = await client.post("/v1/compress", json={"text": LONG_TEXT, "quality": "low"})
    body = r.json()
    assert body["quality"]["verified"] is False
    assert body["quality"]["score"] is None
    assert len(local_api.state.chat_requests()) == 1


async def test_high_quality_skips_the_local_model(router_client: Client, local_api, cloud_api):
    client, _ = router_client
    r = await client.post("/v1/compress", json={"text": LONG_TEXT, "quality": "high"})
    body = r.json()
    assert body["backend"] == "cloud"
    assert body["attempts"][0] == {
        "backend": "local",
        "outcome": "skipped",
        "reason": "policy",
        "detail": "quality high skips role local",
    }
    assert local_api.state.chat_requests() == []
    # the cloud got its key, and never the router's own credentials
    sent = cloud_api.state.chat_requests()[0]
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"


async def test_low_verification_score_escalates_to_cloud(
    router_client: Client, local_api, cloud_api
) -> None:
    client, app = router_client
    local_api.state.lossy = True  # digits come back wrong: the score falls under 0.85
    r = await client.post("/v1/compress", json={"text": LONG_TEXT})
    body = r.json()
    assert body["backend"] == "cloud"
    local = body["attempts"][0]
    assert local["outcome"] == "rejected"
    assert local["reason"] == "quality"
    assert "below the threshold 0.85" in local["detail"]
    # tokens spent on the rejected attempt are in the ledger, but not in the baseline
    usage = ledger_rows(app, "usage")
    by_backend = {(row[3], row[6]) for row in usage}  # backend, accepted
    assert by_backend == {("local", 0), ("cloud", 1)}


async def test_everything_failing_ends_in_zstd(router_client: Client, local_api, cloud_api) -> None:
    client, _ = router_client
    local_api.state.lossy = True
    cloud_api.state.mode = "http_500"
    r = await client.post("/v1/compress", json={"text": LONG_TEXT})
    body = r.json()
    assert r.status_code == 200
    assert body["backend"] == "zstd"
    assert body["method"] == "zstd"
    assert body["quality"]["lossless"] is True
    assert outcomes(body) == [("local", "rejected"), ("cloud", "failed"), ("zstd", "ok")]
    assert body["attempts"][1]["reason"] == "http_5xx"
    r = await client.post("/v1/reconstruct", json=body)  # the whole response is not an envelope
    assert r.status_code == 400
    r = await client.post("/v1/reconstruct", json={"envelope": body["envelope"]})
    assert r.json()["text"] == LONG_TEXT
    assert r.json()["tokens"]["total"] == 0


async def test_output_that_does_not_shrink_is_passed_over(router_client: Client, local_api):
    client, _ = router_client
    short = "Hi."  # the stand-in answers "ref:0", longer than the text
    r = await client.post("/v1/compress", json={"text": short})
    body = r.json()
    assert [a.get("reason") for a in body["attempts"]] == ["low_ratio", "low_ratio", None]
    assert body["backend"] == "zstd"


async def test_explicit_backend_is_tried_first(router_client: Client, local_api) -> None:
    client, _ = router_client
    r = await client.post("/v1/compress", json={"text": LONG_TEXT, "backend": "zstd"})
    assert r.json()["backend"] == "zstd"
    assert outcomes(r.json()) == [("zstd", "ok")]
    r = await client.post(
        "/v1/compress", json={"text": LONG_TEXT, "backend": "local", "quality": "high"}
    )
    assert r.json()["backend"] == "local"  # an explicit choice wins over the quality policy


async def test_llm_envelope_falls_back_to_another_llm_backend(
    router_client: Client, local_api, cloud_api
) -> None:
    client, _ = router_client
    envelope = {
        "version": 1,
        "method": "llm",
        "backend": "local",
        "model": "local-model",
        "prompt_version": "v1",
        "encoding": "text",
        "payload": "Acme shipped 1,250 units.",
        "original": {"bytes": 30, "chars": 30, "sha256": "0" * 64},
    }
    local_api.state.mode = "http_500"
    r = await client.post("/v1/reconstruct", json={"envelope": envelope})
    assert r.status_code == 200, r.text
    assert r.json()["backend"] == "cloud"
    assert outcomes(r.json()) == [("local", "failed"), ("cloud", "ok")]
    assert r.json()["exact"] is False

    envelope["backend"] = "elsewhere"
    local_api.state.mode = "ok"
    r = await client.post("/v1/reconstruct", json={"envelope": envelope})
    assert r.json()["attempts"][0]["reason"] == "not_configured"
    assert r.json()["backend"] == "local"


async def test_llm_envelope_without_any_llm_is_503(router_client: Client, local_api, cloud_api):
    client, app = router_client
    local_api.state.mode = "http_500"
    cloud_api.state.mode = "malformed"
    envelope = {
        "version": 1,
        "method": "llm",
        "backend": "local",
        "prompt_version": "v1",
        "encoding": "text",
        "payload": "x",
        "original": {"bytes": 1, "chars": 1, "sha256": "0" * 64},
    }
    r = await client.post("/v1/reconstruct", json={"envelope": envelope})
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "no_backend_available"
    assert [a["reason"] for a in error["attempts"]] == ["http_5xx", "malformed"]
    assert ledger_rows(app) == []


# --- chat ------------------------------------------------------------------------------------


async def test_chat_passes_through_and_reports_the_route(router_client: Client, local_api):
    client, app = router_client
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "stand-in reply: hello"
    assert r.headers["x-llm-router-backend"] == "local"
    assert r.headers["x-llm-router-attempts"] == "local=ok"
    assert local_api.state.chat_requests()[0].body["model"] == "local-model"
    usage = ledger_rows(app, "usage")
    assert [(u[3], u[5]) for u in usage] == [("local", "chat")]


async def test_chat_model_names_a_backend(router_client: Client, cloud_api) -> None:
    client, _ = router_client
    for model in ("cloud", "cloud-model"):
        r = await client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.headers["x-llm-router-backend"] == "cloud"
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


async def test_chat_quality_header(router_client: Client) -> None:
    client, _ = router_client
    body = {"messages": [{"role": "user", "content": "x"}]}
    r = await client.post(
        "/v1/chat/completions", json=body, headers={"X-LLM-Router-Quality": "high"}
    )
    assert r.headers["x-llm-router-backend"] == "cloud"
    r = await client.post(
        "/v1/chat/completions", json=body, headers={"X-LLM-Router-Quality": "best"}
    )
    assert r.status_code == 400


async def test_chat_with_no_llm_left_is_503_json(router_client: Client, local_api, cloud_api):
    client, app = router_client
    local_api.state.mode = "malformed"
    cloud_api.state.mode = "http_500"
    r = await client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "no_backend_available"
    assert ledger_rows(app) == []


async def test_chat_refused_by_every_backend_is_the_callers_problem(
    router_client: Client, local_api, cloud_api
) -> None:
    client, app = router_client
    local_api.state.mode = cloud_api.state.mode = "http_400"
    r = await client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "upstream_rejected"
    # a bad request must not open the circuit for everybody else
    slot = app.service.router.slot("local")
    assert slot is not None
    assert slot.breaker.failures == 0


async def test_chat_stream_passes_events_through(router_client: Client, local_api) -> None:
    client, app = router_client
    body = {"stream": True, "messages": [{"role": "user", "content": "one two three"}]}
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    text = b"".join(events).decode()
    assert "three" in text
    assert '"usage"' not in text  # asked for on the client's behalf, so removed again
    sent = local_api.state.chat_requests()[0].body
    assert sent["stream_options"] == {"include_usage": True}
    usage = ledger_rows(app, "usage")
    assert len(usage) == 1
    assert usage[0][7] > 0  # real token counts from the usage chunk
    assert usage[0][8] > 0


async def test_chat_stream_keeps_usage_when_the_client_asks(router_client: Client) -> None:
    client, _ = router_client
    body = {
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    assert b'"usage"' in raw


async def test_models_lists_auto_and_llm_backends(router_client: Client) -> None:
    client, _ = router_client
    r = await client.get("/v1/models")
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == ["auto", "local", "cloud"]
    assert r.json()["data"][1]["root"] == "local-model"


# --- ledger report ---------------------------------------------------------------------------


async def test_cost_report_counts_savings_against_the_cloud_baseline(
    router_client: Client,
) -> None:
    client, _ = router_client
    msg = {"messages": [{"role": "user", "content": "x" * 400}]}
    for _ in range(3):
        await client.post("/v1/chat/completions", json=msg)
    await client.post("/v1/chat/completions", json={**msg, "model": "cloud"})
    report = (await client.get("/v1/cost")).json()
    local, cloud = report["by_backend"]["local"], report["by_backend"]["cloud"]
    assert (local["requests"], cloud["requests"]) == (3, 1)
    assert local["tokens"] == 3 * cloud["tokens"]
    # local at 0.0001 vs the 0.001 baseline saves 90%; cloud at the baseline price saves nothing
    assert local["savings_pct"] == 90.0
    assert cloud["savings_pct"] == 0.0
    assert report["totals"]["savings_pct"] == pytest.approx(100 * 0.9 * 3 / 4, abs=0.01)
    assert len(report["by_day"]) == 1
    assert report["by_day"][0]["by_backend"]["local"]["requests"] == 3

    future = (await client.get("/v1/cost", params={"since": "2999-01-01"})).json()
    assert future["totals"]["requests"] == 0
    bad = await client.get("/v1/cost", params={"since": "yesterday"})
    assert bad.status_code == 400


# --- health, readiness, metrics --------------------------------------------------------------


async def test_probes_mark_backends_and_readiness(
    make_config: Callable[..., RouterConfig], local_api, cloud_api
) -> None:
    app = create_app(make_config(), SECRETS, probe=False)
    async with asgi_client(app) as client:
        local_api.state.health_ok = False
        await app.service.probe_all()
        ready = (await client.get("/readyz")).json()
        states = {b["name"]: b["probe"] for b in ready["backends"]}
        assert states == {"local": "failed", "cloud": "healthy", "zstd": "unknown"}
        r = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert r.headers["x-llm-router-attempts"] == "local=skipped:unhealthy, cloud=ok"
        assert local_api.state.chat_requests() == []
        metrics = (await client.get("/metrics")).text
        assert 'llm_router_backend_up{backend="local",role="local"} 0.0' in metrics
        assert 'llm_router_backend_up{backend="cloud",role="cloud"} 1.0' in metrics
        local_api.state.health_ok = True
        await app.service.probe_all()
        r = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert r.headers["x-llm-router-backend"] == "local"


async def test_readyz_is_200_while_zstd_remains(router_client: Client, local_api, cloud_api):
    client, app = router_client
    local_api.state.health_ok = cloud_api.state.health_ok = False
    await app.service.probe_all()
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_metrics_count_requests_tokens_and_fallbacks(
    router_client: Client, local_api
) -> None:
    client, _ = router_client
    local_api.state.mode = "http_500"
    await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    await client.post("/v1/compress", json={"text": ""})
    text = (await client.get("/metrics")).text
    assert 'llm_router_requests_total{endpoint="chat",status="200"} 1.0' in text
    assert 'llm_router_requests_total{endpoint="compress",status="400"} 1.0' in text
    assert (
        'llm_router_fallbacks_total{from_backend="local",reason="http_5xx",to_backend="cloud"} 1.0'
        in text
    )
    assert 'llm_router_tokens_total{backend="cloud",kind="prompt"}' in text
    assert 'llm_router_cost_usd_total{backend="cloud"}' in text
    assert 'llm_router_circuit_state{backend="local"} 0.0' in text
    assert "llm_router_request_duration_seconds_bucket" in text


async def test_circuit_opens_after_consecutive_failures(router_client: Client, local_api):
    client, _ = router_client
    local_api.state.mode = "http_500"
    msg = {"messages": [{"role": "user", "content": "x"}]}
    for _ in range(3):
        await client.post("/v1/chat/completions", json=msg)
    assert len(local_api.state.chat_requests()) == 3
    r = await client.post("/v1/chat/completions", json=msg)
    assert r.headers["x-llm-router-attempts"] == "local=skipped:circuit_open, cloud=ok"
    assert len(local_api.state.chat_requests()) == 3  # not called while open
    text = (await client.get("/metrics")).text
    assert 'llm_router_circuit_state{backend="local"} 2.0' in text


# --- authentication ----------------------------------------------------------------------------


async def test_bearer_tokens_guard_everything_but_health(
    make_config: Callable[..., RouterConfig],
) -> None:
    app = create_app(make_config(), SECRETS_WITH_TOKEN, probe=False)
    async with asgi_client(app) as client:
        for method, path in [
            ("POST", "/v1/compress"),
            ("POST", "/v1/reconstruct"),
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models"),
            ("GET", "/v1/cost"),
        ]:
            r = await client.request(method, path, json={"text": "x"})
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
            r = await client.request(
                method, path, json={"text": "x"}, headers={"Authorization": "Bearer wrong"}
            )
            assert r.status_code == 401, path
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        ok = await client.post(
            "/v1/compress",
            json={"text": LONG_TEXT},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert ok.status_code == 200
        assert len(ledger_rows(app)) == 1


async def test_metrics_can_require_auth(make_config: Callable[..., RouterConfig]) -> None:
    app = create_app(
        make_config(server={"metrics_require_auth": True}), SECRETS_WITH_TOKEN, probe=False
    )
    async with asgi_client(app) as client:
        assert (await client.get("/metrics")).status_code == 401
        r = await client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
        assert r.status_code == 200
