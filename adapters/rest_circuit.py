"""A small thread-safe circuit breaker for the REST adapter.

``closed``: calls go through; ``failure_threshold`` failed lookups in a row
open it. ``open``: calls are refused at once (no socket, no thread blocked)
until ``reset_s`` has passed (default 1 s: a probe a second costs a down ERP
nothing, and every second the circuit stays open after the ERP is back is a
second of zero-ATP answers, i.e. of lost sales). ``half_open``: exactly one probe goes through;
its success closes the circuit, its failure opens it again for ``reset_s``.
"""
from __future__ import annotations

import threading
import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(Exception):
    """Refused without trying; ``retry_in`` seconds until a probe is allowed."""

    def __init__(self, retry_in: float):
        self.retry_in = retry_in
        super().__init__(f"circuit open after repeated failures; next probe in {retry_in:.1f}s")


class CircuitBreaker:
    """Counts consecutive failures; see the module docstring for the states."""

    def __init__(self, failure_threshold: int = 5, reset_s: float = 1.0, clock=time.monotonic,
                 on_change=None):
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self.opened = 0  # times the circuit opened, for metrics

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_s:
                return HALF_OPEN  # the next call will be let through as the probe
            return self._state

    def before(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go through now."""
        with self._lock:
            if self._state == CLOSED:
                return
            waited = self._clock() - self._opened_at
            if self._state == OPEN and waited >= self.reset_s:
                self._set(HALF_OPEN)  # this caller is the probe; others are refused
                return
            raise CircuitOpen(max(0.0, self.reset_s - waited))

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            if self._state != CLOSED:
                self._set(CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or (self._state == CLOSED
                                            and self._failures >= self.failure_threshold):
                self._opened_at = self._clock()
                self.opened += 1
                self._set(OPEN)

    def _set(self, state: str) -> None:
        old, self._state = self._state, state
        if self._on_change is not None:
            self._on_change(old, state)
