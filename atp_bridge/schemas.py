"""The webhook's request and response schemas, and the hot-path parser.

marshmallow is the single source of the request schema and of its error
messages. Valid requests take :func:`parse_request`, a plain-Python check
that a hypothesis property test (``tests/test_schemas.py``) proves accepts
exactly what the schema accepts; only invalid input pays for marshmallow, to
get its messages, and only for the first ``MAX_DETAILS`` problems: the rest
are counted by the same plain checks (:func:`request_error`).
"""
from __future__ import annotations

import traceback
from collections.abc import Mapping
from itertools import islice

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, missing, validate

from atp_bridge.errors import MAX_DETAILS, RequestError

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
    details = fields.List(fields.Nested(ErrorDetailSchema), required=True,
                          validate=validate.Length(max=MAX_DETAILS),
                          metadata={"description": f"The first {MAX_DETAILS} problems, in body order."})
    more_problems = fields.Integer(validate=validate.Range(min=1), metadata={
        "description": "How many more problems the body has beyond `details`; present only then."})


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
    """The 400 for a body :func:`parse_request` refused, worded by the schema.

    Bounded for any body: the top level is checked field by field and a list
    item by item, marshmallow words the first :data:`MAX_DETAILS` problems
    and the rest are only counted (``more_problems``) by plain checks like
    :func:`parse_request`'s (the property test keeps the count exact).
    marshmallow over the whole of a body of millions of bad items took a
    minute and gigabytes, for a 150 MB answer.
    """
    found = _Problems()
    if not isinstance(doc, Mapping):  # refused on its type, before any field is read
        found.check("", _request_schema.load, doc)
    else:
        for name, field in _request_schema.load_fields.items():
            key = field.data_key or name
            value = doc.get(key, missing)
            count = _ITEM_PROBLEMS.get(key)
            if count is not None and type(value) is list and value:
                found.add_items(key, field, value, count)
            else:  # absent, not a list or empty: one message, whatever the size
                found.check(key, field.deserialize, value)
    if not found.details:  # unreachable while the property test holds; fail safe anyway
        found.details.append({"field": "(body)", "problem": "Invalid request."})
    first = found.details[0]
    return RequestError(f"{first['field']}: {first['problem']}", details=found.details,
                        more_problems=found.more)


def _product_problems(p) -> int:
    """How many messages marshmallow gives for this item of ``products``."""
    if type(p) is not dict:
        return 1
    pid = p.get("product_id")
    eid = p.get("external_identifier")
    return (type(pid) is not str or not pid) + (type(eid) is not str or not eid)


def _location_problems(loc) -> int:
    """How many messages marshmallow gives for this item of ``fulfillment_locations``."""
    return type(loc) is not str or not loc


# list fields checked item by item, and the plain count of one item's problems
_ITEM_PROBLEMS = {"products": _product_problems, "fulfillment_locations": _location_problems}

# longest field or problem text in an envelope: a message may quote the input
_MAX_TEXT = 200


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT - 3] + "..."


class _Problems:
    """The first MAX_DETAILS problems as envelope details, and a count of the rest."""

    def __init__(self):
        self.details: list[dict] = []
        self.more = 0

    def add(self, messages, prefix: str) -> None:
        for field, problem in flatten_messages(messages, prefix):
            if len(self.details) < MAX_DETAILS:
                self.details.append({"field": _clip(field), "problem": _clip(problem)})
            else:
                self.more += 1

    def check(self, key: str, validator, value) -> None:
        try:
            validator(value)
        except ValidationError as e:
            _release(e)
            self.add(e.messages, key)

    def add_items(self, key: str, field, items: list, count) -> None:
        """Every bad item of list ``field``; marshmallow words them while there is room."""
        before = len(self.details) + self.more
        inner = field.inner
        for i, item in enumerate(items):
            if not count(item):
                continue
            if len(self.details) >= MAX_DETAILS:  # full: count this item and the rest, in C
                self.more += count(item) + sum(map(count, islice(items, i + 1, None)))
                break
            self.check(f"{key}.{i}", inner.deserialize, item)
        if len(self.details) + self.more == before:  # every item is fine: the list's own rules
            for rule in field.validators:
                self.check(key, rule, items)


def _release(exc: BaseException) -> None:
    """Clear the frames ``exc`` and its causes passed through.

    marshmallow raises from a frame that holds the error (``exc =
    ValidationError(...); raise exc``): a cycle which, through the callers of
    those frames, kept the whole request body alive until a full garbage
    collection (25 MB a request for a body of 2.6 million numbers, which
    allocates too little to trigger one).
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


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
