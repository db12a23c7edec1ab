"""Per-backend health: a circuit breaker fed by requests, and the last background probe."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


class CircuitState(enum.IntEnum):
    """Values are what the ``llm_router_circuit_state`` gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown_s`` lets one trial through.

    The trial's outcome closes the circuit or opens it for another cool-down. A trial whose
    outcome never arrives (the caller was cancelled) expires after one cool-down, so a lost
    trial cannot keep a backend out for good.
    """

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self.cooldown_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def acquire(self) -> str | None:
        """Ask to send a request: None when allowed, else why not."""
        state = self.state
        if state is CircuitState.CLOSED:
            return None
        now = self._clock()
        if state is CircuitState.OPEN:
            assert self._opened_at is not None
            wait = self.cooldown_s - (now - self._opened_at)
            return f"circuit open after {self.failures} consecutive failures; retry in {wait:.0f}s"
        if self._trial_started is not None and now - self._trial_started < self.cooldown_s:
            return "circuit half-open; a trial request is in flight"
        self._trial_started = now
        return None

    def record_success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._trial_started = None

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is CircuitState.HALF_OPEN or self.failures >= self.threshold:
            self._opened_at = self._clock()
            self._trial_started = None


@dataclass
class ProbeState:
    """The last background probe. ``healthy is None`` until the first probe has answered."""

    healthy: bool | None = None
    detail: str = ""

    def record(self, healthy: bool, detail: str) -> None:
        self.healthy = healthy
        self.detail = detail
