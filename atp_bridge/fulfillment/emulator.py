"""A local emulator of NewStore's Fulfillment Provider API, for offline tests
of a warehouse integration. The rules live in :mod:`.store`; this module only
wires HTTP to them.

Where the spec is silent the emulator does this (also in docs/fulfillment.md):

* Authorization must be ``Bearer <token>``: any non-empty token, or exactly
  ``token`` when one is given; else 401 ``unauthorized``. The ``/_emulator``
  test-data endpoints need no token.
* Successful POSTs answer with an empty body (200 for acknowledgement and
  resend, 201 for the rest, 200 for a duplicate shipment).
* Errors are ``{"error_code", "error_description"}`` plus
  ``conflicting_items`` (product ids) when items are at fault. A body that is
  not JSON, or fails the documented schema, is 400
  ``payload_conversion_failed``. Unknown paths are 404 ``not_found``.
* A shipment needs ``carrier`` and ``tracking_code``; ``tracking_url`` and
  ``carrier_service_level`` are optional. ``failed_shipments`` stays empty:
  conflicts are refused synchronously with a 400.
* Test data: ``POST /_emulator/fulfillment_requests`` with
  ``{"items": [{"product_id": "p1", "price": 20.0}], "uuid": optional}`` ->
  201 ``{"uuid", "items": [{"item_id", "product_id", "price"}]}``;
  ``GET /_emulator/fulfillment_requests/<uuid>`` shows every item's status.
  The body may also carry NewStore's ``order_id``, addresses,
  ``shipping_options`` and ``extended_attributes`` for the pushed copy.
* Tokens, expiry and the rate limit: :mod:`.emulator_auth`; pushing every new
  request to the provider and ``GET /_emulator/deliveries``: :mod:`.push`.
"""
from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from werkzeug.exceptions import HTTPException

from . import emulator_auth
from . import errors as e
from . import push
from .models import REJECTION_REASONS
from .store import FulfillmentStore

PREFIX = "/v0/d/fulfillment_requests/<uuid>"
_non_empty = validate.Length(min=1)


class _Payload(Schema):
    """Base for the payload schemas: unknown keys are ignored, as NewStore does."""

    class Meta:
        unknown = EXCLUDE


class _ShipmentSchema(_Payload):
    carrier = fields.String(required=True, validate=_non_empty)
    tracking_code = fields.String(required=True, validate=_non_empty)
    tracking_url = fields.String(allow_none=True)
    carrier_service_level = fields.String(allow_none=True)


class _LineItemSchema(_Payload):
    product_ids = fields.List(fields.String(validate=_non_empty), required=True,
                              validate=_non_empty)
    shipment = fields.Nested(_ShipmentSchema, required=True)


class ShipmentPayload(_Payload):
    """``POST /shipment`` body."""

    line_items = fields.List(fields.Nested(_LineItemSchema), required=True,
                             validate=_non_empty)


class CancelPayload(_Payload):
    """``POST /canceled_items`` body."""

    product_ids = fields.List(fields.String(validate=_non_empty), required=True,
                              validate=_non_empty)


class _MissingItemsSchema(_Payload):
    # Empty strings are allowed here: they are the "every item" special case.
    product_ids = fields.List(fields.String(), required=True, validate=_non_empty)
    reason = fields.String(required=True, validate=validate.OneOf(REJECTION_REASONS))


class RejectItemsPayload(_Payload):
    """``POST /reject_items`` body."""

    missing_items = fields.List(fields.Nested(_MissingItemsSchema), required=True,
                                validate=_non_empty)


class RejectionPayload(_Payload):
    """Deprecated ``POST /rejection`` body."""

    rejection_reason = fields.String(required=True,
                                     validate=validate.OneOf(REJECTION_REASONS))
    missing_product_ids = fields.List(fields.String(validate=_non_empty), load_default=list)


class _TestItemSchema(_Payload):
    product_id = fields.String(required=True, validate=_non_empty)
    price = fields.Float(required=True, validate=validate.Range(min=0))


class EmulatorRequestPayload(_Payload):
    """``POST /_emulator/fulfillment_requests`` body."""

    uuid = fields.String(validate=_non_empty)
    items = fields.List(fields.Nested(_TestItemSchema), required=True, validate=_non_empty)
    # what the pushed "Create fulfillment request" carries (push.newstore_payload)
    order_id = fields.String()
    billing_address = fields.Dict()
    shipping_address = fields.Dict()
    shipping_options = fields.Dict()
    created_at = fields.String()
    extended_attributes = fields.List(fields.Dict(), validate=validate.Length(max=100))


def _load(schema: type[Schema]) -> dict:
    data = request.get_json(silent=True)
    if data is None:
        raise e.PayloadConversionFailedError("The body is not a JSON document.")
    try:
        return schema().load(data)
    except ValidationError as err:
        raise e.PayloadConversionFailedError(
            "The provided payload failed to be converted to the NewStore model, check "
            f"if the data is in the right format: {err.messages}") from err


def _store() -> FulfillmentStore:
    return current_app.extensions["atp_bridge"]["fulfillment_store"]


def _empty(status: int) -> Response:
    return Response(status=status)


def _check_auth() -> None:
    if not request.path.startswith("/v0/"):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise e.UnauthorizedError("Send 'Authorization: Bearer <token>'.")
    emulator_auth.check_api_token(presented)


def _api_error(err: e.FulfillmentAPIError):
    return jsonify(err.to_json()), err.status


def _http_error(err: HTTPException):
    code = (err.name or "error").lower().replace(" ", "_")
    return jsonify({"error_code": code, "error_description": err.description}), err.code


def create_emulator_app(seed: int | None = None, token: str | None = None, *,
                        client_id: str | None = None, client_secret: str | None = None,
                        token_lifetime_s: float = 300.0, rate_limit: int | None = None,
                        pusher: push.Pusher | None = None) -> Flask:
    """Build the emulator app. ``seed`` makes ids and tie-breaks reproducible;
    ``token``, if given, is accepted as a bearer token; with ``client_id`` and
    ``client_secret`` the token endpoint issues tokens valid
    ``token_lifetime_s`` and only those (and ``token``) are accepted.
    ``rate_limit``: API calls per token per second. ``pusher`` gets every new
    fulfillment request."""
    app = Flask(__name__)
    app.extensions["atp_bridge"] = {"fulfillment_store": FulfillmentStore(seed),
                                    "fulfillment_token": token or None}
    credentials = (client_id, client_secret) if client_id and client_secret else None
    emulator_auth.install(app, credentials=credentials, token_lifetime_s=token_lifetime_s,
                          rate_limit=rate_limit)
    push.install(app, pusher)
    app.before_request(_check_auth)
    app.register_error_handler(e.FulfillmentAPIError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    _add_api_routes(app)
    _add_test_routes(app)
    return app


def _add_api_routes(app: Flask) -> None:
    @app.post(f"{PREFIX}/acknowledgement")
    def accept(uuid):
        _store().accept(uuid)
        return _empty(200)

    @app.post(f"{PREFIX}/resend")
    def resend(uuid):
        _store().resend(uuid)
        return _empty(200)

    @app.post(f"{PREFIX}/canceled_items")
    def cancel(uuid):
        _store().cancel(uuid, _load(CancelPayload)["product_ids"])
        return _empty(201)

    @app.get(f"{PREFIX}/canceled_items")
    def canceled_items(uuid):
        return jsonify(_store().canceled_items(uuid))

    @app.post(f"{PREFIX}/reject_items")
    def reject_items(uuid):
        body = _load(RejectItemsPayload)
        groups = [(m["product_ids"], m["reason"]) for m in body["missing_items"]]
        _store().reject_items(uuid, groups)
        return _empty(201)

    @app.get(f"{PREFIX}/reject_items")
    def rejected_items(uuid):
        return jsonify(_store().rejected_items(uuid))

    @app.post(f"{PREFIX}/rejection")
    def reject_request(uuid):
        body = _load(RejectionPayload)
        reason, ids = body["rejection_reason"], body["missing_product_ids"]
        if reason == "cannot_fulfill" and ids:
            raise e.PayloadConversionFailedError(
                "With rejection_reason cannot_fulfill, missing_product_ids has to be empty.")
        if reason == "no_inventory" and not ids:
            raise e.PayloadConversionFailedError(
                "With rejection_reason no_inventory, missing_product_ids has to list "
                "the products that cannot be fulfilled.")
        _store().reject_request(uuid, reason, ids)
        return _empty(201)

    @app.get(f"{PREFIX}/rejection")
    def rejection(uuid):
        return jsonify(_store().rejection(uuid))

    @app.post(f"{PREFIX}/shipment")
    def ship(uuid):
        body = _load(ShipmentPayload)
        line_items = [(li["product_ids"],
                       {k: v for k, v in li["shipment"].items() if v is not None})
                      for li in body["line_items"]]
        duplicate = _store().ship(uuid, line_items)
        return _empty(200 if duplicate else 201)

    @app.get(f"{PREFIX}/shipment")
    def shipment(uuid):
        return jsonify(_store().shipment(uuid))


def _add_test_routes(app: Flask) -> None:
    @app.post("/_emulator/fulfillment_requests")
    def create_request():
        req = add_request(current_app, _load(EmulatorRequestPayload))
        return jsonify({"uuid": req.uuid, "items": [
            {"item_id": i.item_id, "product_id": i.product_id, "price": i.price}
            for i in req.items]}), 201

    @app.get("/_emulator/fulfillment_requests/<uuid>")
    def show_request(uuid):
        return jsonify(_store().snapshot(uuid))


def add_request(app: Flask, body: dict):
    """Create a fulfillment request from a loaded ``EmulatorRequestPayload``
    and hand NewStore's shape of it to the pusher, if any."""
    ext = app.extensions["atp_bridge"]
    req = ext["fulfillment_store"].create(body["items"], body.get("uuid"))
    if ext.get("pusher") is not None:
        ext["pusher"].submit(push.newstore_payload(req, body))
    return req
