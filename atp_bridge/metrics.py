"""Prometheus metrics of atp-bridge, and the ``GET /metrics`` exposition.

Every metric object lives here, prefixed ``atp_bridge_``. Adapters and views
import what they need and cache their label children (``.labels(...)`` once,
then ``.inc()`` / ``.observe()``), so the hot path does no label lookups.

Under gunicorn, ``atp-bridge serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory before any worker starts; prometheus_client then keeps each
worker's values in files there, :func:`render` merges them with a
``MultiProcessCollector``, and the ``child_exit`` hook in
:mod:`atp_bridge.gunicorn_conf` marks dead workers. Without the variable the
default registry of this process is served.

API for adapters (all label values are strings)::

    CACHE.labels(adapter, "hit" | "miss" | "bypass").inc(n)
    CSV_RELOADS.labels(adapter, "ok" | "error").inc(); CSV_ROWS.labels(adapter).set(n)
    CIRCUIT_STATE.labels(adapter).set(CIRCUIT_CLOSED | CIRCUIT_HALF_OPEN | CIRCUIT_OPEN)
"""
from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)

__all__ = ["REQUESTS", "REQUEST_LATENCY", "PAIRS", "ADAPTER_LATENCY", "ADAPTER_ERRORS", "DEGRADED",
           "CACHE", "CSV_RELOADS", "CSV_ROWS", "CIRCUIT_STATE", "render", "MULTIPROC_ENV"]

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
CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN = 0, 1, 2
CIRCUIT_STATE = Gauge("atp_bridge_circuit_state",
                      "Circuit breaker state: 0 closed, 1 half-open, 2 open (worst worker).",
                      ["adapter"], multiprocess_mode="livemax")


def render() -> tuple[bytes, str]:
    """The exposition body and its content type, merged across workers when
    ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
