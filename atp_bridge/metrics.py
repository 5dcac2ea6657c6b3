"""Prometheus metrics of atp-bridge, and the ``GET /metrics`` exposition.

Every metric object lives here, prefixed ``atp_bridge_``. Adapters and views
import what they need and cache their label children (``.labels(...)`` once,
then ``.inc()`` / ``.observe()``), so the hot path does no label lookups.

Updates made on every request go through :func:`batched` handles: they add up
in plain Python under a lock and reach prometheus_client in one write per
bucket when :func:`flush` runs (every :data:`FLUSH_S` seconds from a daemon
thread, before every ``GET /metrics`` render, and at exit). In multiprocess
mode each prometheus_client update is a locked write into a memory-mapped file
(plus a ``getpid``); seven of them per request were the biggest item left in
the profile of a small request. The price: another worker's latest second may
be missing from a scrape.

Under gunicorn, ``atp-bridge serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory before any worker starts; prometheus_client then keeps each
worker's values in files there, :func:`render` merges them with a
``MultiProcessCollector``, and the ``child_exit`` hook in
:mod:`atp_bridge.gunicorn_conf` marks dead workers. Without the variable the
default registry of this process is served.

API for adapters (all label values are strings)::

    CACHE.labels(adapter, "hit" | "miss" | "bypass").inc(n)
    CSV_RELOADS.labels(adapter, "ok" | "error").inc(); CSV_ROWS.labels(adapter).set(n)
    CSV_MTIME.labels(adapter).set(st_mtime)
    CIRCUIT_STATE.labels(adapter).set(CIRCUIT_CLOSED | CIRCUIT_HALF_OPEN | CIRCUIT_OPEN)
"""
from __future__ import annotations

import atexit
import os
import threading
import time
from bisect import bisect_left

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)

__all__ = ["REQUESTS", "REQUEST_LATENCY", "PAIRS", "ADAPTER_LATENCY", "ADAPTER_ERRORS", "DEGRADED",
           "CACHE", "CSV_RELOADS", "CSV_ROWS", "CSV_MTIME", "CIRCUIT_STATE", "DEADLINE", "render", "MULTIPROC_ENV", "batched",
           "flush", "FLUSH_S"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# latency buckets in seconds: NewStore's timeout is 5..60 s, our deadline ~3 s
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PAIRS = (1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000)

REQUESTS = Counter("atp_bridge_requests_total", "HTTP requests answered, by route and status.",
                   ["route", "status"])
REQUEST_LATENCY = Histogram("atp_bridge_request_duration_seconds",
                            "Time from request start to response, by route.", ["route"],
                            buckets=_LATENCY)
PAIRS = Histogram("atp_bridge_request_pairs", "Product x location pairs per webhook request.",
                  buckets=_PAIRS)
ADAPTER_LATENCY = Histogram("atp_bridge_adapter_duration_seconds",
                            "Time an adapter took to answer its batch (failures included).",
                            ["adapter"], buckets=_LATENCY)
ADAPTER_ERRORS = Counter("atp_bridge_adapter_errors_total",
                         "Adapter calls that failed, by adapter and reason (error|timeout|unavailable).",
                         ["adapter", "reason"])
DEGRADED = Counter("atp_bridge_degraded_total",
                   "Webhook answers zeroed by the failure rule, by X-ATP-Degraded reason.",
                   ["reason"])
CACHE = Counter("atp_bridge_cache_total",
                "Read-through cache lookups in pairs, by adapter and result (hit|miss|bypass).",
                ["adapter", "result"])
CSV_RELOADS = Counter("atp_bridge_csv_reloads_total",
                      "CSV file (re)loads, by adapter and result (ok|error).", ["adapter", "result"])
CSV_ROWS = Gauge("atp_bridge_csv_rows", "Rows in the CSV data currently served.", ["adapter"],
                 multiprocess_mode="livemax")
# livemin: the oldest data any live worker serves is what a stuck-file alert must see
CSV_MTIME = Gauge("atp_bridge_csv_mtime_seconds",
                  "Modification time (Unix seconds) of the CSV file whose data is served (oldest worker).",
                  ["adapter"], multiprocess_mode="livemin")
HOLDS_ACTIVE = Gauge("atp_bridge_holds_active",
                     "Zero-ATP holds in force (product x location pairs; '*' counts once), by kind "
                     "(manual|rejection), as the workers last read them.", ["kind"],
                     multiprocess_mode="livemax")
CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN = 0, 1, 2
CIRCUIT_STATE = Gauge("atp_bridge_circuit_state",
                      "Circuit breaker state: 0 closed, 1 half-open, 2 open (worst worker).",
                      ["adapter"], multiprocess_mode="livemax")
# the p99-near-deadline alert and the latency panel compare against it; also
# present in every serving worker, so its absence means no bridge is scraped
DEADLINE = Gauge("atp_bridge_deadline_seconds", "The configured deadline_ms of webhook requests, in seconds.",
                 multiprocess_mode="livemax")


FLUSH_S = 1.0


class _BatchedCounter:
    """``inc`` adds here; :meth:`flush` hands the sum to the counter child."""

    __slots__ = ("child", "lock", "n")

    def __init__(self, child):
        self.child, self.lock, self.n = child, threading.Lock(), 0

    def inc(self, amount: float = 1) -> None:
        with self.lock:
            self.n += amount

    def flush(self) -> None:
        self.flush_to(self.child)

    def flush_to(self, child) -> None:
        """Hand the pending sum to ``child`` (None: drop it)."""
        with self.lock:
            n, self.n = self.n, 0
        if n and child is not None:
            child.inc(n)


class _BatchedHistogram:
    """``observe`` counts into the child's buckets here; :meth:`flush` adds the
    counts and the sum to the histogram child."""

    __slots__ = ("child", "lock", "bounds", "counts", "total")

    def __init__(self, child):
        self.child, self.lock = child, threading.Lock()
        self.bounds = tuple(child._upper_bounds)  # ascending, +Inf last
        self.counts, self.total = [0] * len(self.bounds), 0.0

    def observe(self, value: float) -> None:
        i = bisect_left(self.bounds, value)  # the first bucket with value <= bound, like observe()
        with self.lock:
            self.counts[i] += 1
            self.total += value

    def flush(self) -> None:
        self.flush_to(self.child)

    def flush_to(self, child) -> None:
        """Add the pending counts and sum to ``child`` (None: drop them)."""
        with self.lock:
            counts, self.counts = self.counts, [0] * len(self.bounds)
            total, self.total = self.total, 0.0
        if child is not None and any(counts):
            buckets = child._buckets
            for i, n in enumerate(counts):
                if n:
                    buckets[i].inc(n)
            child._sum.inc(total)


class _Batches:
    """Every batched handle of this process, and the thread that flushes them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.handles: dict[int, object] = {}
        self.thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.flush)

    def _after_fork(self) -> None:
        """A forked child keeps the handles, not the parent's pending counts
        (the parent writes those) nor its locks and thread."""
        self.lock = threading.Lock()
        self.thread = None
        for handle in self.handles.values():
            handle.lock = threading.Lock()
            handle.flush_to(None)
        if self.handles:
            self._start()

    def _start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="atp-bridge-metrics", daemon=True)
        self.thread.start()

    def get(self, child):
        handle = self.handles.get(id(child))
        if handle is None:
            with self.lock:
                handle = self.handles.get(id(child))
                if handle is None:
                    kind = _BatchedHistogram if hasattr(child, "_upper_bounds") else _BatchedCounter
                    handle = self.handles[id(child)] = kind(child)
                if self.thread is None:
                    self._start()
        return handle

    def flush(self) -> None:
        for handle in list(self.handles.values()):
            handle.flush()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            self.flush()


_batches = _Batches()


def batched(child):
    """A handle on a counter child (``inc``) or histogram child (``observe``)
    whose updates are written in batches (see the module docstring). One
    handle per child; label children are never removed, so neither are handles."""
    return _batches.get(child)


def flush() -> None:
    """Write every batched update of this process to prometheus_client now."""
    _batches.flush()


def render() -> tuple[bytes, str]:
    """The exposition body and its content type, merged across workers when
    ``PROMETHEUS_MULTIPROC_DIR`` is set. This process's batched updates are
    flushed first."""
    flush()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
