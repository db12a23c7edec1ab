"""Prometheus metrics, in a registry per application so tests can build several apps."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llm_router.health import CircuitState
from llm_router.ledger import UsageRow, baseline_cost
from llm_router.routing import Router

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2,
    5,
    10,
    30,
    60,
    120,
)


class _BackendStateCollector(Collector):
    """Health and circuit state are read at scrape time: an open circuit half-opens by the clock."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "llm_router_backend_up",
            "1 when the backend can take requests (probe not failed, circuit not open)",
            labels=["backend", "role"],
        )
        probe = GaugeMetricFamily(
            "llm_router_backend_probe_healthy",
            "Last health probe: 1 healthy, 0 failed, -1 not probed yet",
            labels=["backend"],
        )
        circuit = GaugeMetricFamily(
            "llm_router_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            labels=["backend"],
        )
        for slot in self._router.slots:
            up.add_metric([slot.name, slot.cfg.role], 1.0 if slot.usable() else 0.0)
            healthy = slot.probe.healthy
            probe.add_metric([slot.name], -1.0 if healthy is None else float(healthy))
            circuit.add_metric([slot.name], float(slot.breaker.state))
        yield up
        yield probe
        yield circuit


class Metrics:
    """All metrics of one router; also the routing observer that counts fallbacks."""

    def __init__(self, router: Router) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_router_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "llm_router_request_duration_seconds",
            "Time to the response headers, by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.backend_latency = Histogram(
            "llm_router_backend_duration_seconds",
            "Backend call duration by backend and outcome",
            ["backend", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llm_router_tokens",
            "Tokens by backend and kind (prompt, completion)",
            ["backend", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "llm_router_cost_usd",
            "Cost in USD by backend at its configured price",
            ["backend"],
            registry=r,
        )
        self.baseline = Counter(
            "llm_router_baseline_cost_usd",
            "What the delivered work would have cost at the all-cloud baseline price",
            registry=r,
        )
        self.fallbacks = Counter(
            "llm_router_fallbacks",
            "Backends passed over, by source, target and reason",
            ["from_backend", "to_backend", "reason"],
            registry=r,
        )
        self.attempts = Counter(
            "llm_router_attempts",
            "Routing attempts by backend, outcome and reason",
            ["backend", "outcome", "reason"],
            registry=r,
        )
        self.quality = Histogram(
            "llm_router_quality_score",
            "Verification score of LLM compressions",
            ["backend"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0),
            registry=r,
        )
        self.ratio = Histogram(
            "llm_router_compression_ratio",
            "Original bytes / compressed bytes",
            ["method"],
            buckets=(0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 50, 100),
            registry=r,
        )
        self.registry.register(_BackendStateCollector(router))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def usage(self, rows: Iterable[UsageRow], baseline_price: float) -> None:
        for row in rows:
            if row.prompt_tokens:
                self.tokens.labels(row.backend, "prompt").inc(row.prompt_tokens)
            if row.completion_tokens:
                self.tokens.labels(row.backend, "completion").inc(row.completion_tokens)
            self.cost.labels(row.backend).inc(row.cost_usd)
            self.baseline.inc(baseline_cost(row, baseline_price))

    # --- RouteObserver ----------------------------------------------------------------------

    def fallback(self, source: str, target: str, reason: str) -> None:
        self.fallbacks.labels(source, target, reason).inc()

    def attempt(self, backend: str, outcome: str, reason: str, seconds: float | None) -> None:
        self.attempts.labels(backend, outcome, reason).inc()
        if seconds is not None:
            self.backend_latency.labels(backend, outcome).observe(seconds)

    def circuit(self, backend: str, state: CircuitState) -> None:
        log.warning("backend %s: circuit %s", backend, state.name.lower().replace("_", "-"))
