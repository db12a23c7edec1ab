"""Which backends to try, in which order, and the record of what happened to each.

Plain objects only: a :class:`Router` holds one :class:`Slot` per configured backend; a
:class:`Chain` walks the plan for one request, skipping backends whose circuit is open or
whose last probe failed, and keeps the :class:`Attempt` list that every response reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llm_router.backends import HTTP_4XX, TOO_LARGE, BackendFailure
from llm_router.config import BackendConfig, BackendRole, Quality
from llm_router.errors import ApiError
from llm_router.health import CircuitBreaker, CircuitState, ProbeState

log = logging.getLogger(__name__)

Purpose = Literal["compress", "reconstruct", "chat"]
Outcome = Literal["ok", "skipped", "failed", "rejected"]

# Skip reasons (label values).
POLICY = "policy"
CIRCUIT_OPEN = "circuit_open"
UNHEALTHY = "unhealthy"
QUALITY = "quality"
LOW_RATIO = "low_ratio"


@dataclass(frozen=True)
class Attempt:
    backend: str
    outcome: Outcome
    reason: str
    detail: str = ""
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "outcome": self.outcome}
        if self.outcome != "ok":
            out["reason"] = self.reason
            out["detail"] = self.detail
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 2)
        return out

    def header_form(self) -> str:
        """Compact, ASCII-only, for the ``X-LLM-Router-Attempts`` header."""
        text = f"{self.backend}={self.outcome}" + (
            "" if self.outcome == "ok" else f":{self.reason}"
        )
        return text.encode("ascii", "replace").decode("ascii")


class RouteObserver(Protocol):
    """Receives routing events (metrics implements this); routing itself knows no metrics."""

    def fallback(self, source: str, target: str, reason: str) -> None: ...

    def attempt(self, backend: str, outcome: str, reason: str, seconds: float | None) -> None: ...

    def circuit(self, backend: str, state: CircuitState) -> None: ...


class NullObserver:
    def fallback(self, source: str, target: str, reason: str) -> None:
        pass

    def attempt(self, backend: str, outcome: str, reason: str, seconds: float | None) -> None:
        pass

    def circuit(self, backend: str, state: CircuitState) -> None:
        pass


@dataclass
class Slot:
    """One backend's routing state."""

    cfg: BackendConfig
    breaker: CircuitBreaker
    probe: ProbeState = field(default_factory=ProbeState)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def is_llm(self) -> bool:
        return self.cfg.kind == "openai"

    def usable(self) -> bool:
        """For readiness: could a request be sent now? Does not reserve a half-open trial."""
        if not self.is_llm:
            return True
        return self.probe.healthy is not False and self.breaker.state is not CircuitState.OPEN

    def acquire(self) -> tuple[str, str] | None:
        """Reserve a call; None when allowed, else (reason, detail) for skipping it."""
        if not self.is_llm:
            return None  # zstd runs in-process: nothing to be unhealthy
        if self.probe.healthy is False:
            return UNHEALTHY, f"last health probe failed: {self.probe.detail}"
        refused = self.breaker.acquire()
        return None if refused is None else (CIRCUIT_OPEN, refused)


class Router:
    def __init__(
        self,
        backends: Sequence[BackendConfig],
        *,
        failure_threshold: int,
        cooldown_s: float,
        high_quality_skips: Sequence[BackendRole] = ("local",),
        observer: RouteObserver | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.slots = [
            Slot(b, CircuitBreaker(failure_threshold, cooldown_s, clock)) for b in backends
        ]
        self._by_name = {s.name: s for s in self.slots}
        self._high_skips = frozenset(high_quality_skips)
        self.observer: RouteObserver = observer or NullObserver()

    def slot(self, name: str) -> Slot | None:
        return self._by_name.get(name)

    def chain(
        self, purpose: Purpose, quality: Quality = "normal", prefer: str | None = None
    ) -> Chain:
        """The plan for one request.

        ``chat`` and ``reconstruct`` use LLM backends only; ``compress`` uses all, so its plan
        ends in zstd. ``high`` quality skips the roles in ``high_quality_skips``. ``prefer``
        moves that backend to the front; an explicit choice wins over the quality policy.
        """
        eligible = [s for s in self.slots if purpose == "compress" or s.is_llm]
        policy_skips: list[Attempt] = []
        ordered: list[Slot] = []
        preferred = self._by_name.get(prefer) if prefer else None
        if preferred is not None and preferred in eligible:
            ordered.append(preferred)
        for slot in eligible:
            if slot is preferred:
                continue
            if quality == "high" and slot.cfg.role in self._high_skips:
                policy_skips.append(
                    Attempt(
                        slot.name, "skipped", POLICY, f"quality high skips role {slot.cfg.role}"
                    )
                )
                continue
            ordered.append(slot)
        return Chain(self, ordered, policy_skips)


class Chain:
    """Iterate the usable backends of a plan, recording every skip, failure and success."""

    def __init__(self, router: Router, ordered: list[Slot], policy_skips: list[Attempt]) -> None:
        self._router = router
        self._ordered = ordered
        self.attempts: list[Attempt] = list(policy_skips)

    def __iter__(self) -> Iterator[Slot]:
        for slot in self._ordered:
            refused = slot.acquire()
            if refused is not None:
                self._add(Attempt(slot.name, "skipped", *refused))
                continue
            yield slot

    def _add(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        seconds = None if attempt.latency_ms is None else attempt.latency_ms / 1000
        self._router.observer.attempt(attempt.backend, attempt.outcome, attempt.reason, seconds)
        if attempt.outcome in ("failed", "rejected"):
            level = logging.WARNING if attempt.outcome == "failed" else logging.INFO
            log.log(level, "backend %s %s: %s", attempt.backend, attempt.outcome, attempt.detail)

    def failed(self, slot: Slot, failure: BackendFailure, started: float) -> None:
        """A backend error counts against the circuit breaker, except a plain 4xx.

        A 4xx (other than 429) is the backend refusing this request, not being down; counting
        it would let one client with bad requests shut a backend off for everyone.
        """
        if failure.reason == HTTP_4XX:
            self._healthy(slot)
        else:
            before = slot.breaker.state
            slot.breaker.record_failure()
            self._changed(slot, before)
        self._add(Attempt(slot.name, "failed", failure.reason, failure.detail, _ms(started)))

    def rejected(self, slot: Slot, reason: str, detail: str, started: float) -> None:
        """The backend answered but the answer was not good enough: it is healthy."""
        self._healthy(slot)
        self._add(Attempt(slot.name, "rejected", reason, detail, _ms(started)))

    def succeeded(self, slot: Slot, started: float) -> None:
        self._healthy(slot)
        self._add(Attempt(slot.name, "ok", "ok", "", _ms(started)))
        self._report_fallbacks(slot.name)

    def exhausted(self, what: str) -> ApiError:
        """Nothing worked: the passed-over backends fell back to nothing.

        The error every endpoint returns then: 400 when every backend that answered refused
        the request itself (the caller's to fix), 502 when every answer was too large, else
        503. ``what`` completes "no backend could ...".
        """
        self._report_fallbacks("none")
        attempts = [a.as_dict() for a in self.attempts]
        failures = [a for a in self.attempts if a.outcome == "failed"]
        if failures and all(a.reason == HTTP_4XX for a in failures):
            return ApiError(
                400,
                "upstream_rejected",
                f"every backend rejected the request; last: {failures[-1].detail}",
                extra={"attempts": attempts},
            )
        if failures and all(a.reason == TOO_LARGE for a in failures):
            return ApiError(
                502,
                "upstream_response_too_large",
                f"every backend's answer was too large; last: {failures[-1].detail}",
                extra={"attempts": attempts},
            )
        return ApiError(
            503, "no_backend_available", f"no backend could {what}", extra={"attempts": attempts}
        )

    def _report_fallbacks(self, target: str) -> None:
        for attempt in self.attempts:
            if attempt.outcome != "ok" and attempt.reason != POLICY:
                self._router.observer.fallback(attempt.backend, target, attempt.reason)

    def _healthy(self, slot: Slot) -> None:
        before = slot.breaker.state
        slot.breaker.record_success()
        self._changed(slot, before)

    def _changed(self, slot: Slot, before: CircuitState) -> None:
        after = slot.breaker.state
        if after is not before:
            self._router.observer.circuit(slot.name, after)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
