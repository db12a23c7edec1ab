"""An acknowledged request is in the ledger even when the router is killed with SIGKILL.

The kill comes under load, at a moment when another connection holds the database's write
lock, so commits are pending: a router that answered before its commit had returned would
have acknowledged requests that are not in the file, and this test would catch it every time
rather than only when the kill happens to land in a microsecond-wide window.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from routerkit import LONG_TEXT, CloudStandIn, closed_port

pytestmark = pytest.mark.slow

WORKERS = 8
ACKS_BEFORE_KILL = 150
MAX_SECONDS = 30


def start_router(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER")}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "llm_router", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("router did not start:\n" + log.read_text())


def test_acknowledged_requests_survive_sigkill(tmp_path: Path, local_api: CloudStandIn) -> None:
    port = closed_port()
    db = tmp_path / "ledger.sqlite3"
    config = tmp_path / "router.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"port": port},
                "backends": [
                    {
                        "name": "local",
                        "kind": "openai",
                        "role": "local",
                        "base_url": local_api.base_url,
                        "model": "local-model",
                        "price_per_1k_tokens": 0.0001,
                    },
                    {"name": "zstd", "kind": "zstd", "role": "fallback", "level": 3},
                ],
                "ledger": {"path": str(db)},
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    proc = start_router(config, tmp_path / "router.log")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        wait_ready(url, proc, tmp_path / "router.log")

        def worker(n: int) -> None:
            with httpx.Client(timeout=5) as client:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        if (n + i) % 3 == 0:
                            r = client.post(
                                f"{url}/v1/chat/completions",
                                json={"messages": [{"role": "user", "content": f"hi {i}"}]},
                            )
                        else:
                            r = client.post(
                                f"{url}/v1/compress",
                                json={"text": f"{i} {LONG_TEXT}", "quality": "low"},
                            )
                    except httpx.HTTPError:
                        return  # the server is gone
                    if r.status_code == 200:
                        with lock:
                            acked.append(r.headers["x-request-id"])

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + MAX_SECONDS
        while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.005)
        blocker = sqlite3.connect(db, isolation_level=None, timeout=10)
        blocker.execute("BEGIN IMMEDIATE")  # commits now wait for this lock
        held_from = len(acked)
        time.sleep(0.5)  # the workers keep sending
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        blocker.execute("ROLLBACK")
        blocker.close()
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= ACKS_BEFORE_KILL, "the load did not reach the kill point in time"
    conn = sqlite3.connect(db)  # recovers the WAL as the next start of the router would
    try:
        stored = {row[0] for row in conn.execute("SELECT request_id FROM requests")}
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tokens = conn.execute("SELECT SUM(prompt_tokens) FROM usage WHERE backend='local'")
        assert tokens.fetchone()[0] > 0
    finally:
        conn.close()
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged requests lost"
    # while the lock was held nothing could commit, so nothing may have been acknowledged
    assert len(acked) - held_from <= WORKERS
