"""Routing with plain objects: no HTTP, no event loop."""

from __future__ import annotations

from typing import Any

import pytest
from llm_router.backends import BackendFailure
from llm_router.config import BackendConfig
from llm_router.health import CircuitBreaker, CircuitState
from llm_router.routing import Router


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.fallbacks: list[tuple[str, str, str]] = []
        self.circuits: list[tuple[str, CircuitState]] = []

    def fallback(self, source: str, target: str, reason: str) -> None:
        self.fallbacks.append((source, target, reason))

    def attempt(self, backend: str, outcome: str, reason: str, seconds: float | None) -> None:
        pass

    def circuit(self, backend: str, state: CircuitState) -> None:
        self.circuits.append((backend, state))


def backends() -> list[BackendConfig]:
    def llm(name: str, role: Any) -> BackendConfig:
        return BackendConfig(
            name=name, kind="openai", role=role, base_url="http://127.0.0.1:1/v1", model="m"
        )

    return [
        llm("local", "local"),
        llm("cloud", "cloud"),
        BackendConfig(name="zstd", kind="zstd", role="fallback"),
    ]


def make_router(clock: Clock | None = None) -> tuple[Router, Events]:
    events = Events()
    router = Router(
        backends(),
        failure_threshold=2,
        cooldown_s=10,
        observer=events,
        clock=clock or Clock(),
    )
    return router, events


def names(router: Router, *args: Any) -> list[str]:
    return [s.name for s in router.chain(*args)]


# --- circuit breaker -------------------------------------------------------------------------


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert "retry in 10s" in (breaker.acquire() or "")
    clock.now += 10
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.acquire() is None  # the one trial
    assert breaker.acquire() == "circuit half-open; a trial request is in flight"
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.acquire() is None


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.acquire() is None
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 9
    assert breaker.state is CircuitState.OPEN


def test_lost_trial_expires() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.acquire() is None  # its caller never reports back
    clock.now += 10
    assert breaker.acquire() is None


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED


# --- plans -----------------------------------------------------------------------------------


def test_plans_by_purpose_and_quality() -> None:
    router, _ = make_router()
    assert names(router, "compress", "normal") == ["local", "cloud", "zstd"]
    assert names(router, "compress", "low") == ["local", "cloud", "zstd"]
    assert names(router, "compress", "high") == ["cloud", "zstd"]
    assert names(router, "chat", "normal") == ["local", "cloud"]
    assert names(router, "reconstruct", "normal") == ["local", "cloud"]
    chain = router.chain("chat", "high")
    assert [(a.backend, a.outcome, a.reason) for a in chain.attempts] == [
        ("local", "skipped", "policy")
    ]


def test_preferred_backend_goes_first() -> None:
    router, _ = make_router()
    assert names(router, "compress", "normal", "zstd") == ["zstd", "local", "cloud"]
    assert names(router, "chat", "high", "local") == ["local", "cloud"]
    assert names(router, "chat", "normal", "zstd") == ["local", "cloud"]  # not a chat backend


def test_unhealthy_and_open_backends_are_skipped_with_reasons() -> None:
    router, events = make_router()
    local, cloud = router.slot("local"), router.slot("cloud")
    assert local is not None
    assert cloud is not None
    local.probe.record(False, "HTTP 503")
    chain = router.chain("compress")
    first = next(iter(chain))
    assert first.name == "cloud"
    for _ in range(2):
        chain.failed(cloud, BackendFailure("timeout", "read timeout after 1s"), 0.0)
    assert events.circuits == [("cloud", CircuitState.OPEN)]
    chain = router.chain("compress")
    assert [s.name for s in chain] == ["zstd"]
    assert [(a.backend, a.reason) for a in chain.attempts] == [
        ("local", "unhealthy"),
        ("cloud", "circuit_open"),
    ]
    assert "last health probe failed: HTTP 503" in chain.attempts[0].detail


def test_fallbacks_are_reported_from_each_passed_over_backend() -> None:
    router, events = make_router()
    chain = router.chain("compress", "high")
    for slot in chain:
        if slot.name == "cloud":
            chain.failed(slot, BackendFailure("http_5xx", "HTTP 500"), 0.0)
        else:
            chain.succeeded(slot, 0.0)
            break
    # the policy skip of local is not a fallback; the cloud failure is
    assert events.fallbacks == [("cloud", "zstd", "http_5xx")]


def test_quality_rejection_is_not_a_backend_failure() -> None:
    router, _ = make_router()
    chain = router.chain("compress")
    slot = next(iter(chain))
    for _ in range(5):
        chain.rejected(slot, "quality", "quality 0.5 is below the threshold 0.85", 0.0)
    assert slot.breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize(("reason", "opens"), [("http_4xx", False), ("rate_limited", True)])
def test_client_errors_do_not_open_the_circuit(reason: str, opens: bool) -> None:
    router, _ = make_router()
    chain = router.chain("chat")
    slot = next(iter(chain))
    for _ in range(3):
        chain.failed(slot, BackendFailure(reason, "HTTP 4xx"), 0.0)
    assert (slot.breaker.state is CircuitState.OPEN) is opens


def test_readiness_counts_usable_backends() -> None:
    router, _ = make_router()
    for name in ("local", "cloud"):
        slot = router.slot(name)
        assert slot is not None
        slot.probe.record(False, "down")
    assert [s.name for s in router.slots if s.usable()] == ["zstd"]
