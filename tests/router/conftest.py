"""Fixtures for the router's tests; helpers are in routerkit.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from llm_router.app import Gate, create_app
from llm_router.config import RouterConfig, parse_config
from routerkit import API_KEY, SECRETS, CloudStandIn, asgi_client, config_dict


def pytest_configure(config: pytest.Config) -> None:
    # Coroutine tests run on asyncio without an ini file, so the suite behaves the same
    # whichever directory pytest is started from.
    config.option.asyncio_mode = "auto"
    config.addinivalue_line("markers", "e2e: needs a real llama-server and model (env vars)")
    config.addinivalue_line("markers", "slow: starts subprocesses")


# --- stand-ins --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _local_server() -> Iterator[CloudStandIn]:
    with CloudStandIn(model="local-model") as server:
        yield server


@pytest.fixture(scope="session")
def _cloud_server() -> Iterator[CloudStandIn]:
    with CloudStandIn(model="cloud-model", api_key=API_KEY) as server:
        yield server


def _reset(server: CloudStandIn) -> CloudStandIn:
    state = server.state
    state.mode, state.lossy, state.health_ok, state.delay_s = "ok", False, True, 3.0
    state.received.clear()
    state.store.clear()
    return server


@pytest.fixture
def local_api(_local_server: CloudStandIn) -> CloudStandIn:
    """An OpenAI-compatible stand-in playing the local engine (no key)."""
    return _reset(_local_server)


@pytest.fixture
def cloud_api(_cloud_server: CloudStandIn) -> CloudStandIn:
    """The stand-in cloud API; it requires API_KEY."""
    return _reset(_cloud_server)


# --- configuration ----------------------------------------------------------------------------


@pytest.fixture
def make_config(
    tmp_path: Path, local_api: CloudStandIn, cloud_api: CloudStandIn
) -> Callable[..., RouterConfig]:
    """Build a validated config around the two stand-ins; keyword arguments go to routing."""

    def build(server: dict[str, Any] | None = None, **routing: Any) -> RouterConfig:
        raw = config_dict(tmp_path, local_api.base_url, cloud_api.base_url, **routing)
        raw["server"].update(server or {})
        return parse_config(raw)

    return build


@pytest_asyncio.fixture
async def router_client(
    make_config: Callable[..., RouterConfig],
) -> AsyncIterator[tuple[httpx.AsyncClient, Gate]]:
    """The router in-process, default routing, no probes, no auth."""
    app = create_app(make_config(), SECRETS, probe=False)
    async with asgi_client(app) as client:
        yield client, app
