"""Helpers shared by the router's tests (fixtures live in conftest.py).

Everything here talks to loopback only: the stand-in API (tests/standins/cloud_api.py) and the
router itself run on 127.0.0.1 with ports the kernel picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests" / "standins") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "standins"))

from cloud_api import CloudStandIn, closed_port  # noqa: E402
from llm_router.app import Gate  # noqa: E402
from llm_router.config import Secrets  # noqa: E402

API_KEY = "sk-standin-cloud-key-0123456789"
TOKEN = "router-token-abcdef-987654"
EXAMPLE_CONFIG = ROOT / "files" / "llm_router" / "config.example.yml"

LONG_TEXT = (
    "On 2024-03-15 the Berlin office of Acme GmbH shipped 1,250 units of the X200 router to "
    "Deutsche Bahn. Revenue rose 12.5% to EUR 3.4 million, said CFO Maria Schmidt. The next "
    "delivery of 800 units is planned for 2024-06-01 in Hamburg, pending approval by the board."
)
SECRETS = Secrets(api_keys={"cloud": API_KEY}, auth_tokens=())
SECRETS_WITH_TOKEN = Secrets(api_keys={"cloud": API_KEY}, auth_tokens=(TOKEN,))


def config_dict(tmp_path: Path, local_url: str, cloud_url: str, **routing: Any) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 8090},
        "backends": [
            {
                "name": "local",
                "kind": "openai",
                "role": "local",
                "base_url": local_url,
                "model": "local-model",
                "timeout_s": 1.0,
                "connect_timeout_s": 0.5,
                "price_per_1k_tokens": 0.0001,
            },
            {
                "name": "cloud",
                "kind": "openai",
                "role": "cloud",
                "base_url": cloud_url,
                "model": "cloud-model",
                "timeout_s": 1.0,
                "connect_timeout_s": 0.5,
                "price_per_1k_tokens": 0.001,
                "api_key_env": "CLOUD_API_KEY",
            },
            {"name": "zstd", "kind": "zstd", "role": "fallback", "level": 3},
        ],
        "routing": {"failure_threshold": 3, "cooldown_s": 30, **routing},
        "ledger": {"path": str(tmp_path / "ledger.sqlite3")},
    }


@contextlib.asynccontextmanager
async def asgi_client(app: Gate) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in-process."""
    starlette_app = app.starlette
    async with starlette_app.router.lifespan_context(starlette_app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


class LiveRouter:
    """The router under uvicorn in a thread, on a real socket."""

    def __init__(self, app: Gate) -> None:
        self.app = app
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        )
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]})

    def __enter__(self) -> LiveRouter:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive(), "router thread died"
            assert time.monotonic() < deadline, "router did not start in time"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


__all__ = ["CloudStandIn", "closed_port"]  # re-exported: tests import the stand-in from here
