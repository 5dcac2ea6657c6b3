"""Per-request bookkeeping for every route: request id, metrics, access log.

``before_request`` stamps the start time and the request id (``X-Request-ID``
from the caller when it is printable and at most 128 characters, else a fresh
uuid4 hex). ``after_request`` echoes the id, counts the request by route and
status, observes its latency and writes the access line. The webhook view
leaves its facts (pairs, adapters, degraded reason) in ``g.atp``.

Webhook calls are logged at INFO; probes, scrapes and the rest at DEBUG, so a
load balancer's health checks do not flood the log. The ``Authorization``
header is never read here, so it cannot reach a log line.
"""
from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, g, request

from atp_bridge import metrics

__all__ = ["register", "request_id_from", "REQUEST_ID_HEADER"]

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "(unmatched)"  # one label for every 404, so scanners cannot explode cardinality

access_log = logging.getLogger("atp_bridge.access")


def request_id_from(given: str | None) -> str:
    """The caller's request id if it is usable, else a new one."""
    if given and len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return uuid.uuid4().hex


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
    g.atp_t0 = time.perf_counter()
    g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))


def _after(response: Response) -> Response:
    t0 = g.get("atp_t0")
    elapsed = time.perf_counter() - t0 if t0 is not None else 0.0
    rid = g.get("request_id") or request_id_from(None)
    response.headers[REQUEST_ID_HEADER] = rid
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    status = response.status_code
    _children.request(route, status).inc()
    _children.route_latency(route).observe(elapsed)
    atp = g.get("atp")
    if atp is not None:  # a webhook call that reached the bridge
        pairs, adapters, reason = atp
        metrics.PAIRS.observe(pairs)
        if reason:
            _children.degraded_reason(reason).inc()
        level = logging.INFO
    else:
        pairs, adapters, reason = 0, None, None
        level = logging.INFO if request.endpoint and request.endpoint.startswith("availabilities") \
            else logging.DEBUG
    if access_log.isEnabledFor(level):
        access_log.log(level, {
            "msg": "access", "request_id": rid, "method": request.method, "path": request.path,
            "status": status, "pairs": pairs, "adapters": adapters, "duration_ms":
            round(elapsed * 1000, 3), "degraded": reason or None,
            "remote": request.remote_addr})
    return response


def register(app: Flask) -> None:
    """Install the hooks (first before_request, last after_request)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _before)
    app.after_request(_after)
