"""Per-request bookkeeping for every route: request id, metrics, access log.

``before_request`` stamps the start time and the request id (``X-Request-ID``
from the caller when it is printable and at most 128 characters, else 128
random bits in hex) into the WSGI environ. ``after_request`` echoes the id,
counts the request by route and status, observes its latency and writes the
access line. The webhook view leaves its facts (pairs, adapters, degraded
reason) in ``environ["atp_bridge.facts"]``. Every hook reads the request
proxy once: each proxy access is a context-variable lookup, and this runs on
every request.

Webhook calls are logged at INFO; probes, scrapes and the rest at DEBUG, so a
load balancer's health checks do not flood the log. The ``Authorization``
header is never read here, so it cannot reach a log line.
"""
from __future__ import annotations

import itertools
import logging
import os
import time

from flask import Flask, Response, request

from atp_bridge import metrics

__all__ = ["register", "request_id_from", "REQUEST_ID_HEADER", "FACTS"]

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "(unmatched)"  # one label for every 404, so scanners cannot explode cardinality
FACTS = "atp_bridge.facts"  # environ key: (pairs, adapters, degraded reason) of a webhook call
_T0, _RID = "atp_bridge.t0", "atp_bridge.request_id"

access_log = logging.getLogger("atp_bridge.access")


class _Ids:
    """New request ids: 32 hex digits, a random 64-bit prefix per process then a
    64-bit counter. Unique like a uuid4 (a fork draws a new prefix) but with no
    system call per request: ``os.urandom`` releases the GIL, and under
    gunicorn's threads every extra release is a chance for a GIL hand-off that
    measurably costs throughput (docs/benchmarks.md)."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_ids = _Ids()


def request_id_from(given: str | None) -> str:
    """The caller's request id if it is usable, else a new one."""
    if given and len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return _ids.new()


class _Children:
    """Label children resolved once per (route, status) / route / reason."""

    def __init__(self):
        self.requests: dict = {}
        self.latency: dict = {}
        self.degraded: dict = {}

    def request(self, route: str, status: int):
        key = (route, status)
        child = self.requests.get(key)
        if child is None:
            child = self.requests[key] = metrics.REQUESTS.labels(route, str(status))
        return child

    def route_latency(self, route: str):
        child = self.latency.get(route)
        if child is None:
            child = self.latency[route] = metrics.REQUEST_LATENCY.labels(route)
        return child

    def degraded_reason(self, reason: str):
        child = self.degraded.get(reason)
        if child is None:
            child = self.degraded[reason] = metrics.DEGRADED.labels(reason)
        return child


_children = _Children()


def _before() -> None:
    environ = request.environ
    environ[_T0] = time.perf_counter()
    environ[_RID] = request_id_from(environ.get("HTTP_X_REQUEST_ID"))


def _after(response: Response) -> Response:
    req = request._get_current_object()
    environ = req.environ
    t0 = environ.get(_T0)
    elapsed = time.perf_counter() - t0 if t0 is not None else 0.0
    rid = environ.get(_RID) or request_id_from(None)
    response.headers[REQUEST_ID_HEADER] = rid
    rule = req.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    status = response.status_code
    _children.request(route, status).inc()
    _children.route_latency(route).observe(elapsed)
    facts = environ.get(FACTS)
    if facts is not None:  # a webhook call that reached the bridge
        pairs, adapters, reason = facts
        metrics.PAIRS.observe(pairs)
        if reason:
            _children.degraded_reason(reason).inc()
        level = logging.INFO
    else:
        pairs, adapters, reason = 0, None, None
        endpoint = req.endpoint
        level = logging.INFO if endpoint and endpoint.startswith("availabilities") else logging.DEBUG
    if access_log.isEnabledFor(level):
        access_log.log(level, {
            "msg": "access", "request_id": rid, "method": req.method, "path": req.path,
            "status": status, "pairs": pairs, "adapters": adapters, "duration_ms":
            round(elapsed * 1000, 3), "degraded": reason or None,
            "remote": req.remote_addr})
    return response


def register(app: Flask) -> None:
    """Install the hooks (first before_request, last after_request)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _before)
    app.after_request(_after)
