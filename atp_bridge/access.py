"""Per-request bookkeeping for every route: request id, metrics, access log.

:class:`AccessMiddleware` wraps the Flask app's ``wsgi_app``: it takes the
request id (``X-Request-ID`` from the caller when it is printable ASCII of at
most 128 characters, else a new one), echoes it in the response, counts the
request by route and status, observes its latency and writes the access line.
The webhook view leaves its facts (pairs, adapters, degraded reason) in
``environ["atp_bridge.facts"]``.

Webhook calls are logged at INFO; probes, scrapes and the rest at DEBUG, so a
load balancer's health checks do not flood the log. The ``Authorization``
header is never read here, so it cannot reach a log line.
"""
from __future__ import annotations

import itertools
import logging
import os
import time

import orjson
from flask import Flask

from atp_bridge import metrics, tracing
from atp_bridge.http_errors import envelope
from atp_bridge.logs import make_record

__all__ = ["register", "request_id_from", "REQUEST_ID_HEADER", "FACTS", "ARRIVED"]

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED = "(unmatched)"  # one label for every 404, so scanners cannot explode cardinality
_UNMATCHED = (UNMATCHED, logging.DEBUG)
FACTS = "atp_bridge.facts"  # environ key: (pairs, adapters, degraded reason) of a webhook call
ARRIVED = "atp_bridge.arrived"  # environ key: time.monotonic() when the request reached the app

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


class AccessMiddleware:
    """WSGI middleware around Flask's ``wsgi_app``: the bookkeeping of every request.

    It runs outside Flask's request context, so it costs no context lookups
    and no hook dispatch: it stamps the start, echoes the request id in the
    response headers, then counts, times and logs the answer. ``routes`` maps
    each static URL rule to itself (the ``route`` label); any other path is
    :data:`UNMATCHED`. ``webhooks`` are the rules whose access line is INFO.
    """

    def __init__(self, wsgi_app, routes, webhooks):
        self.wsgi_app = wsgi_app
        # path -> (route label, access line level); webhook calls are INFO, the rest DEBUG
        self.routes = {r: (r, logging.INFO if r in webhooks else logging.DEBUG) for r in routes}
        self.handles: dict = {}  # (route, status) -> batched (request count, latency) handles
        self.pairs = metrics.batched(metrics.PAIRS)
        self.traced = frozenset(webhooks)  # with tracing on, webhook calls get a span

    def _new_handles(self, route: str, status: int) -> tuple:
        handles = self.handles[route, status] = (
            metrics.batched(metrics.REQUESTS.labels(route, str(status))),
            metrics.batched(metrics.REQUEST_LATENCY.labels(route)))
        return handles

    def __call__(self, environ: dict, start_response):
        # under the gevent worker a request reaches the app as soon as its headers are
        # in (no queue for a thread): the webhook's deadline counts from here
        t0 = environ[ARRIVED] = time.monotonic()
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        answered = []

        def start(status: str, headers: list, exc_info=None):
            headers.append((REQUEST_ID_HEADER, rid))
            answered.append(status)
            return start_response(status, headers, exc_info)

        path = environ.get("PATH_INFO", "")
        if path[:2] == "//":  # Werkzeug would match "//availabilities" as "/availabilities"
            body = _not_found(start)
        elif tracing.tracer is not None and path in self.traced:
            body = tracing.serve(self.wsgi_app, environ, start, rid, path, FACTS)
        else:
            body = self.wsgi_app(environ, start)
        elapsed = time.monotonic() - t0
        status = int(answered[-1][:3]) if answered else 500
        route, level = self.routes.get(path, _UNMATCHED)
        count, latency = self.handles.get((route, status)) or self._new_handles(route, status)
        count.inc()
        latency.observe(elapsed)
        facts = environ.get(FACTS)
        if facts is not None:  # a webhook call that reached the bridge
            pairs, adapters, reason = facts
            self.pairs.observe(pairs)
            if reason:
                metrics.DEGRADED.labels(reason).inc()
        else:
            pairs, adapters, reason = 0, None, None
        if access_log.isEnabledFor(level):
            if not path.isascii():  # WSGI strings are latin-1 decoded bytes; paths are UTF-8
                path = path.encode("latin-1", "replace").decode("utf-8", "replace")
            access_log.handle(make_record(access_log.name, level, {
                "msg": "access", "request_id": rid, "method": environ.get("REQUEST_METHOD"),
                "path": path, "status": status, "pairs": pairs,
                "adapters": adapters, "duration_ms": round(elapsed * 1000, 3),
                "degraded": reason or None, "remote": environ.get("REMOTE_ADDR")}))
        return body


_NOT_FOUND = orjson.dumps(envelope("not_found", "no such path; the webhook is POST /availabilities "
                                               "(and the same under base_path)"))


def _not_found(start_response) -> list[bytes]:
    start_response("404 NOT FOUND", [("Content-Type", "application/json"),
                                     ("Content-Length", str(len(_NOT_FOUND)))])
    return [_NOT_FOUND]


def register(app: Flask, webhooks) -> None:
    """Wrap ``app.wsgi_app``; call after every route is registered.
    ``webhooks``: the URL rules of the webhook."""
    rules = [r.rule for r in app.url_map.iter_rules() if not r.arguments]
    app.wsgi_app = AccessMiddleware(app.wsgi_app, rules, webhooks)
