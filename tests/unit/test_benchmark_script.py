"""box_benchmark.py end to end against a small fake router on loopback (standard library).

The fake answers the router's API shapes (files/llm_router/README.md): compressions of texts
containing "People" are served by an LLM with a verification score, the rest are rejected
for quality and served by zstd; a ledger counts what it served. Real runs against the real
router and llama.cpp are in the benchmark's report; these tests pin the script's bounds,
its exit codes and what it records.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "files" / "benchmark"))

import box_benchmark as bb  # noqa: E402

ITEMS = "legal-short,literary-short"


class FakeRouter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    token = ""
    fail_compress = False
    delay_s = 0.0
    seen_auth: list[str] = []
    seen_texts: list[str] = []
    ledger = {"requests": 0, "tokens": 0}
    lock = threading.Lock()

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self):
        got = self.headers.get("Authorization", "")
        self.seen_auth.append(got)
        if self.token and got != f"Bearer {self.token}":
            self._send(
                401,
                {"error": {"message": "missing or invalid bearer token", "code": "unauthorized"}},
            )
            return False
        return True

    def do_GET(self):
        if self.path == "/readyz":
            return self._send(
                200,
                {
                    "ready": True,
                    "backends": [
                        {"name": "local", "role": "local"},
                        {"name": "zstd", "role": "fallback"},
                    ],
                },
            )
        if not self._authorised():
            return None
        if self.path == "/v1/models":
            return self._send(200, {"data": [{"id": "auto"}, {"id": "local", "root": "tiny"}]})
        if self.path == "/v1/cost":
            with self.lock:
                n, t = self.ledger["requests"], self.ledger["tokens"]
            totals = {
                "requests": n,
                "calls": n,
                "prompt_tokens": t,
                "completion_tokens": 0,
                "tokens": t,
                "cost_usd": t * 1e-7,
                "baseline_cost_usd": t * 1e-6,
            }
            return self._send(
                200, {"baseline_price_per_1k_tokens": 0.001, "totals": totals, "by_backend": {}}
            )
        return self._send(404, {"error": {"code": "not_found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self._authorised():
            return None
        time.sleep(self.delay_s)
        with self.lock:
            self.ledger["requests"] += 1
            self.ledger["tokens"] += 100
        if self.path == "/v1/compress":
            if self.fail_compress:
                return self._send(
                    503, {"error": {"message": "no backend", "code": "no_backend_available"}}
                )
            text = body["text"]
            self.seen_texts.append(text)
            size = len(text.encode())
            if "People" in text:
                env = {"method": "llm", "backend": "local", "payload": "short"}
                return self._send(
                    200,
                    {
                        "envelope": env,
                        "backend": "local",
                        "method": "llm",
                        "model": "tiny",
                        "sizes": {"original_bytes": size, "compressed_bytes": 5},
                        "ratio": size / 5,
                        "quality": {
                            "verified": body.get("verify"),
                            "score": 0.9,
                            "threshold": 0.85,
                        },
                        "tokens": {"prompt": 80, "completion": 20, "total": 100},
                        "latency_ms": 10.0,
                        "attempts": [{"backend": "local", "outcome": "ok", "latency_ms": 10.0}],
                    },
                )
            env = {"method": "zstd", "backend": "zstd", "payload": "KLUv"}
            return self._send(
                200,
                {
                    "envelope": env,
                    "backend": "zstd",
                    "method": "zstd",
                    "model": None,
                    "sizes": {"original_bytes": size, "compressed_bytes": size // 2},
                    "ratio": 2.0,
                    "quality": {"verified": False, "score": 1.0, "threshold": 0.85},
                    "tokens": {"prompt": 80, "completion": 20, "total": 100},
                    "latency_ms": 10.0,
                    "attempts": [
                        {
                            "backend": "local",
                            "outcome": "rejected",
                            "reason": "quality",
                            "detail": "quality 0.420 is below the threshold 0.85",
                            "latency_ms": 9.0,
                        },
                        {"backend": "zstd", "outcome": "ok", "latency_ms": 0.1},
                    ],
                },
            )
        if self.path == "/v1/reconstruct":
            method = body["envelope"]["method"]
            return self._send(
                200,
                {
                    "text": "x",
                    "backend": body["envelope"]["backend"],
                    "method": method,
                    "model": None,
                    "exact": method == "zstd",
                    "sizes": {
                        "compressed_bytes": 5,
                        "reconstructed_bytes": 1,
                        "original_bytes": 300,
                    },
                    "tokens": {"prompt": 5, "completion": 40, "total": 45},
                    "latency_ms": 4.0,
                    "attempts": [
                        {"backend": body["envelope"]["backend"], "outcome": "ok", "latency_ms": 4.0}
                    ],
                },
            )
        return self._send(404, {"error": {"code": "not_found"}})


@pytest.fixture
def router():
    class Handler(FakeRouter):
        seen_auth = []
        seen_texts = []
        ledger = {"requests": 0, "tokens": 0}
        lock = threading.Lock()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Handler, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _run(url, out, *extra):
    return bb.main(
        [
            "--url",
            url,
            "--out",
            str(out),
            "--items",
            ITEMS,
            "--timeout",
            "5",
            "--latency-seconds",
            "20",
            "--duration",
            "1",
            *extra,
        ]
    )


def test_a_run_writes_samples_and_summary(router, tmp_path):
    _, url = router
    out = tmp_path / "r.json"
    assert _run(url, out) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["schema"] == bb.SCHEMA
    phases = {(s["phase"], s["op"]) for s in r["samples"]}
    assert phases == {
        ("warmup", "compress"),
        ("latency", "compress"),
        ("latency", "reconstruct"),
        ("throughput", "compress"),
    }
    s = r["summary"]
    assert s["requests"]["failed"] == 0
    assert s["backends"]["compress"]["local"] >= 1
    assert s["backends"]["compress"]["zstd"] >= 1
    assert s["quality"]["llm_rejected_for_quality"] >= 1
    assert s["reconstruct"]["by_method"]["llm"]["n"] == 1
    assert s["throughput"]["concurrency"] == 4
    assert s["throughput"]["per_minute"] > 0
    # The ledger delta covers exactly the run's requests (warm-up included: it was sent).
    assert s["cost"]["totals"]["requests"] == len(r["samples"])
    assert s["cost"]["totals"]["savings_pct"] == pytest.approx(90.0)
    assert r["corpus"][0]["id"] == "legal-short"


def test_no_text_is_sent_twice(router, tmp_path):
    """Engines cache processed prompts: a repeated identical text would be served faster than
    real traffic ever is, so the warm-up is no corpus text and repeats carry a marker."""
    handler, url = router
    handler.delay_s = 0.02
    assert _run(url, tmp_path / "r.json", "--rounds", "2", "--duration", "1") == 0
    texts = handler.seen_texts
    assert len(texts) > 2 * 2 + 1  # warm-up, two rounds of two items, throughput
    assert len(set(texts)) == len(texts)
    corpus = {
        p.read_text(encoding="utf-8") for p in (ROOT / "files/benchmark/corpus").glob("*.txt")
    }
    assert texts[0] not in corpus
    assert all(t in corpus or t.split("\n", 1)[1] in corpus for t in texts[1:])


def test_every_loop_is_bounded_by_time_and_count(router, tmp_path):
    handler, url = router
    handler.delay_s = 0.05
    out = tmp_path / "r.json"
    started = time.monotonic()
    assert _run(url, out, "--max-requests", "3", "--duration", "1", "--concurrency", "2") == 0
    assert time.monotonic() - started < 10
    r = json.loads(out.read_text(encoding="utf-8"))
    latency = [s for s in r["samples"] if s["phase"] == "latency"]
    assert len(latency) <= 3
    thr = r["summary"]["throughput"]
    assert thr["started"] <= 3
    window_end = thr["t_start_s"] + thr["duration_s"]
    assert all(
        s["t_start_s"] <= window_end + 0.05 for s in r["samples"] if s["phase"] == "throughput"
    )


def test_the_time_window_closes_the_throughput_phase(router, tmp_path):
    handler, url = router
    handler.delay_s = 0.2
    out = tmp_path / "r.json"
    assert _run(url, out, "--duration", "1", "--concurrency", "2", "--no-warmup") == 0
    thr = json.loads(out.read_text(encoding="utf-8"))["summary"]["throughput"]
    # Two clients, 0.2 s per request, 1 s window: about ten requests, never the 400 allowed.
    assert 4 <= thr["started"] <= 14
    assert thr["wall_s"] < 1 + 5


def test_failed_requests_are_recorded_and_the_run_still_succeeds(router, tmp_path):
    handler, url = router
    handler.fail_compress = True
    out = tmp_path / "r.json"
    assert _run(url, out, "--duration", "0") == 0
    s = json.loads(out.read_text(encoding="utf-8"))["summary"]
    assert s["requests"]["ok"] == 0
    assert s["requests"]["errors"] == {"http_503_no_backend_available": 2}
    assert s["throughput"] is None


def test_the_bearer_token_comes_from_the_environment(router, tmp_path, monkeypatch, capsys):
    handler, url = router
    handler.token = "s3cret"
    out = tmp_path / "r.json"
    monkeypatch.delenv("LLM_ROUTER_TOKEN", raising=False)
    assert _run(url, out) == 2
    assert "LLM_ROUTER_TOKEN" in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setenv("LLM_ROUTER_TOKEN", "s3cret")
    assert _run(url, out, "--duration", "0") == 0
    assert handler.seen_auth[-1] == "Bearer s3cret"
    assert "s3cret" not in out.read_text(encoding="utf-8")


def test_sigterm_stops_the_run_and_keeps_what_was_measured(router, tmp_path):
    handler, url = router
    handler.delay_s = 0.3
    out = tmp_path / "r.json"
    script = ROOT / "files" / "benchmark" / "box_benchmark.py"
    proc = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        [
            sys.executable,
            str(script),
            "--url",
            url,
            "--out",
            str(out),
            "--timeout",
            "5",
            "--duration",
            "30",
            "--latency-seconds",
            "30",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while len(handler.seen_texts) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["interrupted"] == "SIGTERM"
    assert r["elapsed_s"] < 10
    assert r["summary"]["requests"]["total"] >= 1


def test_an_unreachable_router_is_exit_code_2(tmp_path, capsys):
    assert bb.main(["--url", "http://127.0.0.1:9", "--out", str(tmp_path / "r.json")]) == 2
    assert "does not answer" in capsys.readouterr().err
