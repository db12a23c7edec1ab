"""The client side of the CLI against a live router."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llm_router.app import create_app
from llm_router.config import RouterConfig
from routerkit import LONG_TEXT, SECRETS_WITH_TOKEN, TOKEN, LiveRouter


@pytest.fixture
def live(make_config: Callable[..., RouterConfig]) -> Iterator[LiveRouter]:
    with LiveRouter(create_app(make_config(), SECRETS_WITH_TOKEN, probe=False)) as router:
        yield router


def cli(*args: str, stdin: str = "", token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ROUTER")}
    if token:
        env["LLM_ROUTER_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "llm_router", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_compress_then_reconstruct_through_pipes(live: LiveRouter, tmp_path: Path) -> None:
    done = cli("compress", "--url", live.url, "--quality", "low", stdin=LONG_TEXT)
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["backend"] == "local"
    saved = tmp_path / "compressed.json"
    saved.write_text(done.stdout)  # the whole response is accepted, not only the envelope
    back = cli("reconstruct", "--url", live.url, str(saved))
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["text"] == LONG_TEXT


def test_compress_options_reach_the_router(live: LiveRouter, tmp_path: Path) -> None:
    text = tmp_path / "in.txt"
    text.write_text(LONG_TEXT)
    done = cli("compress", "--url", live.url, "--backend", "zstd", "--no-verify", str(text))
    assert json.loads(done.stdout)["method"] == "zstd"
    done = cli("compress", "--url", live.url, "--quality", "high", "--verify", str(text))
    body = json.loads(done.stdout)
    assert body["backend"] == "cloud"
    assert body["quality"]["verified"] is True


def test_errors_exit_non_zero(live: LiveRouter) -> None:
    done = cli("compress", "--url", live.url, stdin=LONG_TEXT, token=None)
    assert done.returncode != 0
    assert "HTTP 401" in done.stderr
    done = cli("reconstruct", "--url", live.url, stdin='{"version": 9}')
    assert done.returncode != 0
    assert "unsupported version 9" in done.stderr
    done = cli("compress", "--url", "http://127.0.0.1:9", stdin="x")
    assert done.returncode != 0
    assert "cannot reach the router" in done.stderr


def test_score(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(LONG_TEXT)
    b.write_text(LONG_TEXT.replace("1,250", "1,205"))
    done = cli("score", str(a), str(b))
    result = json.loads(done.stdout)
    assert result["missing_facts"] == ["1,250"]
    assert 0 < result["score"] < 1
