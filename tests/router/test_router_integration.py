"""The router under uvicorn, on loopback, with the stand-in cloud API failing in each way that
matters. Requests keep succeeding through fallback, and every response says why."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llm_router.app import create_app
from llm_router.config import parse_config
from routerkit import LONG_TEXT, SECRETS, CloudStandIn, LiveRouter, closed_port, config_dict

CLOUD_TIMEOUT = 0.4
MSG = {"messages": [{"role": "user", "content": "tell me something"}]}


def live_config(tmp_path: Path, local: CloudStandIn, cloud_url: str, **routing: Any) -> Any:
    raw = config_dict(tmp_path, local.base_url, cloud_url, **routing)
    raw["backends"][1]["timeout_s"] = CLOUD_TIMEOUT
    return parse_config(raw)


@pytest.fixture
def live(tmp_path: Path, local_api: CloudStandIn, cloud_api: CloudStandIn) -> Iterator[LiveRouter]:
    cfg = live_config(tmp_path, local_api, cloud_api.base_url, failure_threshold=3)
    with LiveRouter(create_app(cfg, SECRETS, probe=False)) as router:
        yield router


def ledger_requests(live: LiveRouter) -> int:
    conn = sqlite3.connect(live.app.service.cfg.ledger.path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
    finally:
        conn.close()


def first_reason(attempts: list[dict[str, Any]]) -> str:
    return attempts[0]["reason"]


def stream_chat(
    client: httpx.Client, url: str, body: dict[str, Any]
) -> tuple[httpx.Response, bytes]:
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        return r, r.read()


FAILURES = [
    # (stand-in mode, the reason the router gives)
    ("http_500", "http_5xx"),
    ("http_429", "rate_limited"),
    ("malformed", "malformed"),
    ("no_choices", "malformed"),
    ("timeout", "timeout"),
]


@pytest.mark.parametrize(("mode", "reason"), FAILURES, ids=[f[0] for f in FAILURES])
def test_cloud_failures_fall_back(live: LiveRouter, cloud_api, local_api, mode, reason) -> None:
    cloud_api.state.mode = mode
    with httpx.Client(timeout=10) as client:
        # compress at quality high: the cloud is first, zstd takes over
        r = client.post(f"{live.url}/v1/compress", json={"text": LONG_TEXT, "quality": "high"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["backend"] == "zstd"
        cloud = body["attempts"][1]
        assert (cloud["backend"], cloud["outcome"], cloud["reason"]) == ("cloud", "failed", reason)
        if mode == "timeout":
            assert cloud["latency_ms"] < CLOUD_TIMEOUT * 1000 + 500

        # chat asking for the cloud: the local engine takes over
        r = client.post(f"{live.url}/v1/chat/completions", json={**MSG, "model": "cloud"})
        assert r.status_code == 200, r.text
        assert r.headers["x-llm-router-backend"] == "local"
        assert r.headers["x-llm-router-attempts"] == f"cloud=failed:{reason}, local=ok"
        assert r.json()["choices"][0]["message"]["content"].startswith("stand-in reply")

        # streaming too, since nothing had been sent yet
        r, raw = stream_chat(client, live.url, {**MSG, "model": "cloud", "stream": True})
        assert r.status_code == 200
        assert r.headers["x-llm-router-backend"] == "local"
        assert raw.endswith(b"data: [DONE]\n\n")

        # three failures in a row: the circuit is open and the cloud is not even asked
        calls = len(cloud_api.state.chat_requests())
        r = client.post(f"{live.url}/v1/chat/completions", json={**MSG, "model": "cloud"})
        assert r.headers["x-llm-router-attempts"] == "cloud=skipped:circuit_open, local=ok"
        assert len(cloud_api.state.chat_requests()) == calls
    assert ledger_requests(live) == 4


def test_connection_refused_falls_back(tmp_path: Path, local_api: CloudStandIn) -> None:
    cfg = live_config(tmp_path, local_api, f"http://127.0.0.1:{closed_port()}/v1")
    with LiveRouter(create_app(cfg, SECRETS, probe=False)) as live, httpx.Client() as client:
        r = client.post(f"{live.url}/v1/compress", json={"text": LONG_TEXT, "quality": "high"})
        assert r.json()["backend"] == "zstd"
        cloud = r.json()["attempts"][1]
        assert cloud["reason"] == "connect_error"
        assert "refused" in cloud["detail"]
        r = client.post(f"{live.url}/v1/chat/completions", json={**MSG, "model": "cloud"})
        assert r.headers["x-llm-router-attempts"] == "cloud=failed:connect_error, local=ok"


def test_slow_first_byte_falls_back_before_anything_is_sent(live: LiveRouter, cloud_api) -> None:
    cloud_api.state.mode = "slow_first_byte"
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        r, raw = stream_chat(client, live.url, {**MSG, "model": "cloud", "stream": True})
        assert time.monotonic() - started < CLOUD_TIMEOUT + 2
    assert r.status_code == 200
    assert r.headers["x-llm-router-attempts"] == "cloud=failed:timeout, local=ok"
    assert b"stand-in reply" in raw or b"stand-in" in raw.replace(b'"', b"")
    assert raw.endswith(b"data: [DONE]\n\n")


def test_stream_that_stalls_midway_ends_with_an_error_event(live: LiveRouter, cloud_api) -> None:
    cloud_api.state.mode = "stall_mid_stream"
    with httpx.Client(timeout=10) as client:
        r, raw = stream_chat(client, live.url, {**MSG, "model": "cloud", "stream": True})
        assert r.status_code == 200  # the headers had gone out: too late for a status code
        assert r.headers["x-llm-router-backend"] == "cloud"
        events = [e for e in raw.split(b"\n\n") if e]
        assert b'"role":"assistant"' in events[0].replace(b" ", b"")
        assert b"backend stream failed" in events[-1]
        assert b"[DONE]" not in raw
        # the next request is served normally
        r = client.post(f"{live.url}/v1/chat/completions", json=MSG)
        assert r.status_code == 200


def test_stream_that_is_not_sse_falls_back(live: LiveRouter, cloud_api) -> None:
    cloud_api.state.mode = "not_sse"
    with httpx.Client(timeout=10) as client:
        r, raw = stream_chat(client, live.url, {**MSG, "model": "cloud", "stream": True})
    assert r.headers["x-llm-router-attempts"] == "cloud=failed:malformed, local=ok"
    assert raw.endswith(b"data: [DONE]\n\n")


def test_circuit_half_opens_and_closes_when_the_cloud_recovers(
    tmp_path: Path, local_api: CloudStandIn, cloud_api: CloudStandIn
) -> None:
    cfg = live_config(tmp_path, local_api, cloud_api.base_url, failure_threshold=2, cooldown_s=0.5)
    cloud_api.state.mode = "http_500"
    body = {**MSG, "model": "cloud"}
    with LiveRouter(create_app(cfg, SECRETS, probe=False)) as live, httpx.Client() as client:
        for _ in range(2):
            client.post(f"{live.url}/v1/chat/completions", json=body)
        r = client.post(f"{live.url}/v1/chat/completions", json=body)
        assert r.headers["x-llm-router-attempts"].startswith("cloud=skipped:circuit_open")
        cloud_api.state.mode = "ok"
        time.sleep(0.6)
        metrics = client.get(f"{live.url}/metrics").text
        assert 'llm_router_circuit_state{backend="cloud"} 1.0' in metrics  # half-open
        r = client.post(f"{live.url}/v1/chat/completions", json=body)
        assert r.headers["x-llm-router-attempts"] == "cloud=ok"
        metrics = client.get(f"{live.url}/metrics").text
        assert 'llm_router_circuit_state{backend="cloud"} 0.0' in metrics


def test_background_probes_take_a_dead_backend_out_and_back(
    tmp_path: Path, local_api: CloudStandIn, cloud_api: CloudStandIn
) -> None:
    cfg = live_config(tmp_path, local_api, cloud_api.base_url, health_interval_s=0.1)
    app = create_app(cfg, SECRETS, probe=True)

    def wait_for(client: httpx.Client, predicate: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if predicate(client.get("/readyz").json()):
                return
            time.sleep(0.05)
        raise AssertionError("probe state did not change")

    def probe(name: str) -> Callable[[dict[str, Any]], str]:
        return lambda body: next(b["probe"] for b in body["backends"] if b["name"] == name)

    with LiveRouter(app) as router, httpx.Client(base_url=router.url) as client:
        wait_for(client, lambda b: probe("local")(b) == "healthy")
        local_api.state.health_ok = False
        wait_for(client, lambda b: probe("local")(b) == "failed")
        r = client.post("/v1/chat/completions", json=MSG)
        assert r.headers["x-llm-router-attempts"] == "local=skipped:unhealthy, cloud=ok"
        local_api.state.health_ok = True
        wait_for(client, lambda b: probe("local")(b) == "healthy")
        r = client.post("/v1/chat/completions", json=MSG)
        assert r.headers["x-llm-router-backend"] == "local"


def test_concurrent_requests_through_failures_all_succeed(live: LiveRouter, cloud_api) -> None:
    """A bounded burst (64 requests, 8 at a time) while the cloud answers 500."""
    import concurrent.futures

    cloud_api.state.mode = "http_500"

    def one(i: int) -> int:
        with httpx.Client(timeout=10) as client:
            if i % 2:
                r = client.post(
                    f"{live.url}/v1/compress", json={"text": LONG_TEXT, "quality": "high"}
                )
            else:
                r = client.post(f"{live.url}/v1/chat/completions", json={**MSG, "model": "cloud"})
            return r.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(64), timeout=60))
    assert statuses == [200] * 64
    assert ledger_requests(live) == 64


def test_client_leaving_a_stream_still_gets_its_tokens_recorded(
    live: LiveRouter, local_api: CloudStandIn
) -> None:
    local_api.state.mode = "stall_mid_stream"
    with httpx.Client(timeout=10) as client:
        body = {**MSG, "stream": True}
        with client.stream("POST", f"{live.url}/v1/chat/completions", json=body) as r:
            first = next(r.iter_raw())
            assert first.startswith(b"data: ")
        # the client hung up after the first event; the spent tokens still reach the ledger
        deadline = time.monotonic() + 10
        while ledger_requests(live) == 0:
            assert time.monotonic() < deadline, "the abandoned stream was never recorded"
            time.sleep(0.05)
        # and the router is fine for the next caller
        local_api.state.mode = "ok"
        assert client.post(f"{live.url}/v1/chat/completions", json=MSG).status_code == 200
