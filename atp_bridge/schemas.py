"""The webhook's request and response schemas, and the hot-path parser.

marshmallow is the single source of the request schema and of its error
messages. Valid requests take :func:`parse_request`, a plain-Python check
that a hypothesis property test (``tests/test_schemas.py``) proves accepts
exactly what the schema accepts; only invalid input pays for marshmallow, to
get its messages.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate

from atp_bridge.errors import RequestError

_NON_EMPTY = validate.Length(min=1)


class ProductSchema(Schema):
    """One product NewStore asks about."""

    class Meta:
        unknown = EXCLUDE

    product_id = fields.String(required=True, validate=_NON_EMPTY,
                               metadata={"description": "NewStore product id."})
    external_identifier = fields.String(required=True, validate=_NON_EMPTY,
                                        metadata={"description": "The retailer's id of the product."})


class AvailabilityRequestSchema(Schema):
    """Body of ``POST /availabilities``. Unknown extra fields are ignored."""

    class Meta:
        unknown = EXCLUDE

    products = fields.List(fields.Nested(ProductSchema), required=True, validate=_NON_EMPTY)
    fulfillment_locations = fields.List(fields.String(validate=_NON_EMPTY), required=True,
                                        validate=_NON_EMPTY)


class AvailabilitySchema(Schema):
    """One row of the answer (documentation only: the hot path builds dicts)."""

    product_id = fields.String(required=True)
    external_identifier = fields.String(required=True)
    fulfillment_location = fields.String(required=True)
    atp = fields.Integer(required=True, validate=validate.Range(min=0))


class AvailabilityResponseSchema(Schema):
    availabilities = fields.List(fields.Nested(AvailabilitySchema), required=True)


class ErrorDetailSchema(Schema):
    field = fields.String(required=True)
    problem = fields.String(required=True)


class ErrorSchema(Schema):
    """The one JSON envelope of every 4xx answer."""

    error = fields.String(required=True, metadata={"description": "Machine-readable code."})
    message = fields.String(required=True, metadata={"description": "What is wrong, for humans."})
    details = fields.List(fields.Nested(ErrorDetailSchema), required=True)


class HealthSchema(Schema):
    """Body of ``GET /healthz``."""

    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class AdapterHealthSchema(Schema):
    """One adapter on ``/readyz``; adapters may add their own keys."""

    class Meta:
        unknown = INCLUDE

    ok = fields.Boolean(required=True)
    detail = fields.String(required=True)


class ReadinessSchema(Schema):
    """Body of ``GET /readyz`` (200 ready, 503 not ready)."""

    status = fields.String(required=True, validate=validate.OneOf(["ready", "not_ready"]))
    adapters = fields.Dict(keys=fields.String(), values=fields.Nested(AdapterHealthSchema),
                           required=True)


_request_schema = AvailabilityRequestSchema()


def parse_request(doc) -> tuple[list[str], list[str], list[str]] | None:
    """``(product_ids, external_identifiers, locations)`` for a valid body, else None.

    Accepts exactly what :class:`AvailabilityRequestSchema` accepts.
    """
    if type(doc) is not dict:
        return None
    products = doc.get("products")
    locations = doc.get("fulfillment_locations")
    if type(products) is not list or not products or type(locations) is not list or not locations:
        return None
    pids = []
    eids = []
    for p in products:
        if type(p) is not dict:
            return None
        pid = p.get("product_id")
        eid = p.get("external_identifier")
        if type(pid) is not str or type(eid) is not str or not pid or not eid:
            return None
        pids.append(pid)
        eids.append(eid)
    for loc in locations:
        if type(loc) is not str or not loc:
            return None
    return pids, eids, locations


def request_error(doc) -> RequestError:
    """The 400 for a body :func:`parse_request` refused, from the schema's messages."""
    try:
        _request_schema.load(doc)
    except ValidationError as e:
        details = [{"field": f, "problem": m} for f, m in flatten_messages(e.messages)]
    else:  # unreachable while the property test holds; fail safe anyway
        details = [{"field": "(body)", "problem": "Invalid request."}]
    first = details[0]
    return RequestError(f"{first['field']}: {first['problem']}", details=details)


def flatten_messages(messages, prefix: str = "", root: str = "(body)") -> list[tuple[str, str]]:
    """marshmallow's nested message dict -> ``[(dotted.key, message)]``."""
    out = []
    if isinstance(messages, dict):
        for k, v in messages.items():
            key = prefix if k == "_schema" else (f"{prefix}.{k}" if prefix else str(k))
            out.extend(flatten_messages(v, key, root))
    elif isinstance(messages, list):
        for m in messages:
            out.extend(flatten_messages(m, prefix, root))
    else:
        out.append((prefix or root, str(messages)))
    return out
