"""HTTP routes: the webhook, health and readiness.

The webhook's hot path parses with orjson, checks the body with
:func:`atp_bridge.schemas.parse_request`, builds the answer from plain dicts and
serialises with orjson. marshmallow runs only for invalid bodies, to word the
400.
"""
from __future__ import annotations

import hmac
import logging
import time

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from atp_bridge import metrics
from atp_bridge.access import ARRIVED, FACTS
from atp_bridge.errors import RequestError
from atp_bridge.schemas import parse_request, request_error
from atp_bridge.timeouts import TimeLimit, close_connection, time_limit

log = logging.getLogger("atp_bridge")

bp = Blueprint("atp_bridge", __name__)

JSON = "application/json"


def json_response(body, status: int = 200, headers=None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype=JSON, headers=headers)


def _state():
    return current_app.extensions["atp_bridge"]


def check_auth(keys: tuple[bytes, ...], given: str) -> None:
    """Accept ``Authorization: <key>`` or ``Bearer <key>``, exactly; constant-time compare.

    The scheme is case-insensitive and followed by exactly one space; nothing
    else is stripped (HTTP itself drops the blanks around a header's value),
    so ``Bearer  <key>`` or a key with a stray character is refused.
    """
    if given[:7].lower() == "bearer ":
        given = given[7:]
    given_b = given.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:  # compare against every key: no early exit to time
        ok |= hmac.compare_digest(given_b, key)
    if not ok:
        raise RequestError("missing or invalid API key in the Authorization header",
                           status=401, code="unauthorized")


def read_body(environ: dict, limit: int, deadline: float) -> bytes:
    """The whole request body, at most ``limit`` bytes, in by ``deadline``.

    Read from ``wsgi.input`` directly, so a chunked body gets the same limit as
    one with a ``Content-Length`` (413), a body shorter than its
    ``Content-Length`` or with broken chunk framing is a 400, and a body still
    trickling in at the deadline is a 408, never a truncated read taken for
    the body. Any of these leaves unread bytes on the connection, so it is
    closed after the answer.
    """
    declared = environ.get("CONTENT_LENGTH")
    declared = int(declared) if declared and declared.isdigit() else None
    try:
        if declared is not None and declared > limit:
            raise _too_large(limit)
        try:
            with time_limit(deadline - time.monotonic()):
                raw = environ["wsgi.input"].read(limit + 1)
        except TimeLimit:
            raise RequestError("request body not complete within deadline_ms", status=408,
                               code="body_timeout",
                               details=[{"field": "(body)", "problem": "sent too slowly"}]) from None
        except Exception as e:  # the server's framing error (bad chunk size, missing terminator...)
            problem = f"malformed body framing: {str(e)[:200] or type(e).__name__}"
            raise RequestError(f"(body): {problem}", code="bad_framing",
                               details=[{"field": "(body)", "problem": problem}]) from None
        if len(raw) > limit:
            raise _too_large(limit)
        if declared is not None and len(raw) < declared:
            problem = f"body has {len(raw)} bytes, Content-Length says {declared}"
            raise RequestError(f"(body): {problem}", code="incomplete_body",
                               details=[{"field": "(body)", "problem": problem}])
    except RequestError:
        close_connection(environ)
        raise
    return raw


def check_containers(raw: bytes, max_pairs: int) -> None:
    """Refuse, before parsing, a body with more JSON objects and arrays than any
    request within ``max_pairs`` can hold (one object per product, a few for the
    envelope; 4 per pair allows extra fields). Parsed, 1.75 million ``{}`` in
    5 MB cost a worker ~160 MB; counting braces costs microseconds, and only a
    body large enough to hold that many is counted at all."""
    limit = 4 * max_pairs + 64
    if len(raw) // 2 <= limit:
        return
    found = raw.count(b"{") + raw.count(b"[")  # an upper bound: strings may hold brackets too
    if found > limit:
        problem = (f"{found} JSON objects and arrays, more than a request within "
                   f"max_pairs={max_pairs} can hold ({limit})")
        raise RequestError(f"(body): {problem}", code="bad_request",
                           details=[{"field": "(body)", "problem": problem}])


def _too_large(limit: int) -> RequestError:
    msg = f"request body is larger than max_body_bytes={limit}"
    return RequestError(msg, status=413, code="body_too_large",
                        details=[{"field": "(body)", "problem": msg}])


def availabilities():
    """``POST /availabilities``: NewStore's External Availability Webhook."""
    environ = request.environ
    started = environ.get(ARRIVED) or time.monotonic()  # the deadline counts from arrival
    state = _state()
    if state.api_keys:
        check_auth(state.api_keys, environ.get("HTTP_AUTHORIZATION", ""))
    config = state.config
    raw = read_body(environ, config.max_body_bytes, started + state.bridge.deadline_s)
    check_containers(raw, config.max_pairs)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        problem = f"not valid UTF-8 JSON: {e}"
        raise RequestError(f"(body): {problem}", code="invalid_json",
                           details=[{"field": "(body)", "problem": problem}]) from None
    parsed = parse_request(doc)
    if parsed is None:
        raise request_error(doc)
    pids, eids, locations = parsed
    n_pairs = len(pids) * len(locations)
    if n_pairs > config.max_pairs:
        raise RequestError(
            f"{len(pids)} products x {len(locations)} locations = {n_pairs} pairs, more than "
            f"max_pairs={config.max_pairs}; split the request", status=413, code="too_many_pairs",
            details=[{"field": "products", "problem": f"at most {config.max_pairs} pairs per request"}])

    try:
        answer = state.bridge.answer(pids, eids, locations, started)
        atps, reason, used = answer.atps, answer.reason, answer.adapters
    except Exception:  # an internal bug still gets NewStore an explicit answer
        log.exception("internal error answering availabilities; answering zero ATP")
        atps, reason, used = [0] * n_pairs, "internal", ()
    environ[FACTS] = (n_pairs, used, reason)  # for the access line and metrics

    # one comprehension, no per-row index arithmetic: zip(locations, it) takes
    # exactly len(locations) values of the product-major answer per product
    it = iter(atps)
    if config.omit_unknown:
        rows = [{"product_id": pid, "external_identifier": eid, "fulfillment_location": loc, "atp": a}
                for pid, eid in zip(pids, eids) for loc, a in zip(locations, it) if a is not None]
    else:
        rows = [{"product_id": pid, "external_identifier": eid, "fulfillment_location": loc, "atp": a}
                for pid, eid in zip(pids, eids) for loc, a in zip(locations, it)]
    headers = {"X-ATP-Degraded": reason} if reason else None
    return json_response({"availabilities": rows}, headers=headers)


@bp.get("/healthz")
def healthz():
    """Liveness: 200 while the process serves."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: 200 only when every adapter is healthy; 503 otherwise."""
    health = _state().bridge.health()
    ready = all(h.ok for h in health.values())
    body = {"status": "ready" if ready else "not_ready",
            "adapters": {name: h.as_dict() for name, h in health.items()}}
    return json_response(body, status=200 if ready else 503)


@bp.get("/metrics")
def prometheus_metrics():
    """Prometheus text format, merged across gunicorn workers."""
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this service (built once at startup)."""
    return Response(_state().openapi, mimetype=JSON)


def register(app: Flask, base_path: str) -> list[str]:
    """Mount the webhook at ``/availabilities`` and under ``base_path``; return its rules."""
    # exactly the documented paths: no merging of "//" (Werkzeug would answer a 308
    # whose Location is built from the caller's Host header), anything else is a 404
    app.url_map.merge_slashes = False
    rules = ["/availabilities"] + ([f"{base_path}/availabilities"] if base_path else [])
    for i, rule in enumerate(rules):
        app.add_url_rule(rule, "availabilities" if i == 0 else "availabilities_base",
                         availabilities, methods=["POST"])
    app.register_blueprint(bp)
    return rules
