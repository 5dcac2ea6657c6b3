"""The provider's side: receive NewStore's "Create fulfillment request" POSTs.

:func:`create_receiver_blueprint` (or :func:`create_receiver_app`, a whole WSGI
app) answers ``POST <path>`` (default ``/fulfillment_requests``):

* ``Authorization: Bearer <api_key>`` checked in constant time
  (``hmac.compare_digest``); 401 otherwise. ``api_key=None`` turns auth off
  (a warning is logged: only for a private network).
* The body is validated by :class:`FulfillmentRequestSchema`; a bad one is 400
  with the project's JSON error envelope, each problem naming its field path
  (``items.0.product_id``).
* NewStore delivers at least once, so a request is recognised by its ``id``:
  a repeat is answered 200 ``{"duplicate": true}`` and not handed on.
  :class:`MemoryDedup` keeps ids in the process; :class:`RedisDedup` keeps
  them in Redis (shared by every worker and pod) for ``ttl_s``.
* Each new request goes to ``on_request(payload)``. If the callback raises,
  the id is forgotten again and the answer is 500, so NewStore's retry is
  processed instead of being dropped as a duplicate.
"""
from __future__ import annotations

import hmac
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable

from flask import Blueprint, Flask, jsonify, request
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from atp_bridge.http_errors import envelope

log = logging.getLogger("atp_bridge.fulfillment")
_non_empty = validate.Length(min=1)


class _Open(Schema):
    """NewStore may add fields: keep them, so the callback sees the whole payload."""

    class Meta:
        unknown = INCLUDE


class _ShippingOptions(_Open):
    carrier = fields.String(required=True, validate=_non_empty)
    service_level = fields.String(required=True, validate=_non_empty)


class _Item(_Open):
    # the product id is what every Fulfillment Provider API call addresses a unit by
    product_id = fields.String(required=True, validate=_non_empty)


class _ExtendedAttribute(_Open):
    name = fields.String(required=True)
    value = fields.Raw()


class FulfillmentRequestSchema(_Open):
    """NewStore's "Create fulfillment request" body."""

    id = fields.String(required=True, validate=_non_empty)
    order_id = fields.String()
    billing_address = fields.Dict(required=True)
    shipping_address = fields.Dict(required=True)
    shipping_options = fields.Nested(_ShippingOptions, required=True)
    created_at = fields.DateTime(required=True, format="iso")
    items = fields.List(fields.Nested(_Item), required=True, validate=_non_empty)
    extended_attributes = fields.List(fields.Nested(_ExtendedAttribute), load_default=list,
                                      validate=validate.Length(max=100))


class MemoryDedup:
    """Ids seen by this process, the newest ``max_ids`` of them."""

    def __init__(self, max_ids: int = 100_000):
        self.max_ids = max_ids
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, request_id: str) -> bool:
        """``True`` when ``request_id`` is new (and now remembered)."""
        with self._lock:
            if request_id in self._ids:
                return False
            self._ids[request_id] = None
            if len(self._ids) > self.max_ids:
                self._ids.popitem(last=False)
            return True

    def discard(self, request_id: str) -> None:
        with self._lock:
            self._ids.pop(request_id, None)


class RedisDedup:
    """Ids in Redis under ``prefix + id`` for ``ttl_s`` (``SET NX EX``: atomic, so
    two workers receiving the same delivery hand it on once)."""

    def __init__(self, client, prefix: str = "atp:fulfillment:seen:", ttl_s: int = 7 * 86400):
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def add(self, request_id: str) -> bool:
        return bool(self.client.set(self.prefix + request_id, 1, nx=True, ex=self.ttl_s))

    def discard(self, request_id: str) -> None:
        self.client.delete(self.prefix + request_id)


def _problems(messages: Any, path: str = "") -> list[dict]:
    """marshmallow's nested messages -> ``[{"field": "items.0.product_id", "problem"}]``."""
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            if key == "_schema":  # marshmallow's key for the body as a whole
                out += _problems(value, path)
            else:
                out += _problems(value, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [{"field": path or "(body)", "problem": m} for m in messages]
    if isinstance(messages, list):
        return [p for m in messages for p in _problems(m, path)]
    return [{"field": path or "(body)", "problem": str(messages)}]


def _error(status: int, code: str, message: str, details=None):
    resp = jsonify(envelope(code, message, details))
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="fulfillment-provider"'
    return resp


def create_receiver_blueprint(on_request: Callable[[dict], None], *, api_key: str | None,
                              dedup=None, path: str = "/fulfillment_requests",
                              name: str = "fulfillment_receiver") -> Blueprint:
    """A blueprint that receives NewStore's fulfillment requests at ``path``.
    ``dedup`` defaults to a :class:`MemoryDedup`."""
    if api_key is None:
        log.warning("fulfillment receiver without an api key: anyone who can reach %s can "
                    "send fulfillment requests", path)
    seen = dedup if dedup is not None else MemoryDedup()
    expected = api_key.encode() if api_key is not None else None
    bp = Blueprint(name, __name__)

    @bp.post(path)
    def receive():
        if expected is not None:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    presented.strip().encode(), expected):
                return _error(401, "unauthorized", "send 'Authorization: Bearer <api key>' "
                                                   "with the key configured in NewStore")
        data = request.get_json(silent=True)
        if data is None:
            return _error(400, "invalid_json", "the body is not a JSON document",
                          [{"field": "(body)", "problem": "not JSON"}])
        try:
            payload = FulfillmentRequestSchema().load(data)
        except ValidationError as err:
            details = _problems(err.messages)
            return _error(400, "invalid_fulfillment_request",
                          f"{len(details)} problem(s) in the fulfillment request", details)
        request_id = payload["id"]
        if not seen.add(request_id):
            return jsonify({"id": request_id, "duplicate": True})
        try:
            on_request(data)  # the body as sent: the callback may keep it verbatim
        except Exception:
            seen.discard(request_id)  # so NewStore's next attempt is processed
            log.exception("fulfillment request %s: the callback failed", request_id)
            return _error(500, "internal_error", "the fulfillment request could not be "
                                                 "processed; it will be accepted again")
        return jsonify({"id": request_id, "duplicate": False})

    return bp


def create_receiver_app(on_request: Callable[[dict], None], *, api_key: str | None,
                        dedup=None, path: str = "/fulfillment_requests") -> Flask:
    """A WSGI app with only the receiver (plus JSON 404/405)."""
    app = Flask("atp_bridge.fulfillment.receiver")
    app.register_blueprint(create_receiver_blueprint(on_request, api_key=api_key, dedup=dedup,
                                                     path=path))

    @app.errorhandler(404)
    @app.errorhandler(405)
    def _http(err):
        code = (err.name or "error").lower().replace(" ", "_")
        return _error(err.code, code, err.description)

    return app
