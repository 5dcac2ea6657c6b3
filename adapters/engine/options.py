"""The engine's YAML keys of ``type: rest`` (and of the connectors built on it).

``per``, ``vars``, ``path``, ``params``, ``body``, ``extract`` and
``paginate``; templated
``headers`` values (holding ``{{``) too. Giving any of ``path``, ``params``,
``body`` or ``extract`` switches the adapter from the built-in wire formats
(``request`` / ``response``) to the engine; ``extract`` is then required.
Templates and expressions are compiled here, when the config loads, so
``check-config`` names the key of a broken one.
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from atp_bridge.adapters.engine.extract import COMBINE, Extractor, ExtractProblem
from atp_bridge.adapters.engine.paginate import PAGINATORS, make_paginator
from atp_bridge.adapters.engine.templates import CallTemplate, TemplateProblem
from atp_bridge.adapters.engine.wire import PER, TemplateWire, allowed_names

__all__ = ["ENGINE_KEYS", "ExtractSchema", "build_wire"]

ENGINE_KEYS = ("path", "params", "body", "extract", "paginate")
_EXPR = dict(load_default=None, validate=validate.Length(min=1))


class _PageBase(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(PAGINATORS))
    max_pages = fields.Integer(load_default=20, validate=validate.Range(min=1, max=10_000))


class _Offset(_PageBase):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=100_000))
    offset_param = fields.String(**_EXPR)
    limit_param = fields.String(**_EXPR)
    has_more = fields.String(**_EXPR)
    total = fields.String(**_EXPR)
    start = fields.Integer(load_default=0, validate=validate.Range(min=0))


class _NextLink(_PageBase):
    next = fields.String(required=True, validate=validate.Length(min=1))


class _Cursor(_PageBase):
    cursor = fields.String(required=True, validate=validate.Length(min=1))
    has_next = fields.String(**_EXPR)


_PAGE_SCHEMAS = {"offset": _Offset, "next_link": _NextLink, "link_header": _PageBase, "cursor": _Cursor}


class _Paginate(fields.Field):
    """``paginate:``: ``type`` picks the keys (adapters/engine/paginate.py)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("Must be a mapping with a type.")
        schema = _PAGE_SCHEMAS.get(value.get("type"))
        if schema is None:
            raise ValidationError({"type": [f"Must be one of: {', '.join(PAGINATORS)}."]})
        loaded = schema().load(value)
        if loaded["type"] == "offset" and loaded["has_more"] and loaded["total"]:
            raise ValidationError({"total": ["Give has_more or total, not both."]})
        try:
            return make_paginator(loaded)
        except ExtractProblem as e:
            key, _, msg = str(e).partition(": ")
            raise ValidationError({key.split(".", 1)[1]: [msg]}) from None


class _Rows(fields.Field):
    """One JMESPath expression, or a list of them (nested rows)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            return value
        raise ValidationError("Must be a JMESPath expression or a list of them.")


class ExtractSchema(Schema):
    """``extract``: see :mod:`atp_bridge.adapters.engine.extract`."""

    class Meta:
        unknown = RAISE

    rows = _Rows(load_default="@")
    product = fields.String(load_default=None, validate=validate.Length(min=1))
    location = fields.String(load_default=None, validate=validate.Length(min=1))
    atp = fields.String(load_default="atp", validate=validate.Length(min=1))
    minus = fields.String(load_default=None, validate=validate.Length(min=1))
    combine = fields.String(load_default="first", validate=validate.OneOf(COMBINE))
    errors = fields.String(load_default=None, validate=validate.Length(min=1))
    ignore_case = fields.Boolean(load_default=False)
    retry_on = fields.String(load_default=None, validate=validate.Length(min=1))

    @post_load
    def _compile(self, data, **kwargs):
        try:
            return Extractor(**data)
        except ExtractProblem as e:
            raise _problem(str(e)) from None


def _problem(message: str, prefix: str = "") -> ValidationError:
    """``"params.x: msg"`` -> a ValidationError on that key (check-config shows it)."""
    key, _, msg = message.partition(": ")
    return ValidationError(msg, field_name=prefix + key)


def engine_fields() -> dict:
    """The schema fields the REST options schema adds for the engine."""
    return {
        "per": fields.String(load_default=None, validate=validate.OneOf(PER)),
        "vars": fields.Dict(keys=fields.String(), load_default=dict),
        "path": fields.String(load_default=None),
        "params": fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                              values=fields.String(), load_default=None),
        "body": fields.Raw(load_default=None),
        "extract": fields.Nested(ExtractSchema, load_default=None),
        "paginate": _Paginate(load_default=None),
        # per-call caps on the ids of one call (adapters/engine/wire.py calls())
        "max_products": fields.Integer(load_default=None, validate=validate.Range(min=1, max=100_000)),
        "max_locations": fields.Integer(load_default=None, validate=validate.Range(min=1, max=100_000)),
    }


def build_wire(data: dict, given: set) -> None:
    """Replace the engine keys in loaded options ``data`` by a ``wire``
    (a :class:`TemplateWire`), or check that none was half given. ``given``:
    the keys present in the YAML (to tell a default from an explicit value)."""
    per, extract, paginator = data.pop("per"), data.pop("extract"), data.pop("paginate")
    path, params, body, vars_ = data.pop("path"), data.pop("params"), data.pop("body"), data.pop("vars")
    caps = {k: data.pop(k) for k in ("max_products", "max_locations")}
    engine = [k for k in ENGINE_KEYS if k in given]
    if not engine:
        misplaced = [k for k, v in (("per", per), ("vars", vars_), *caps.items()) if v]
        if misplaced:
            raise ValidationError("Only with the engine's templates (path, params, body, extract); "
                                  "the built-in request styles choose their own calls.",
                                  field_name=misplaced[0])
        return
    for builtin in ("request", "response"):
        if builtin in given:
            raise ValidationError(f"{builtin} is for the built-in wire formats; with the engine's "
                                  f"templates ({', '.join(engine)}) the answer is read by extract.",
                                  field_name=builtin)
    if extract is None:
        raise ValidationError("Required with path, params or body: how to read the answer.",
                              field_name="extract")
    per = per or "batch"
    for key, one in (("max_products", "product"), ("max_locations", "location")):
        if caps[key] is not None and per in (one, "pair"):
            raise ValidationError(f"Has no effect with per: {per} (every call asks one {one}).",
                                  field_name=key)
    for name in ("product", "location"):
        if extract.paths[name] is None and name not in allowed_names(per):
            raise ValidationError(f"Required unless per: {name} or pair (a call per {per} does "
                                  f"not know its {name}).", field_name=f"extract.{name}")
    if body is not None and data.get("method") == "GET":
        raise ValidationError("GET carries no body: remove body or use method: POST.", field_name="method")
    headers = data["headers"]
    templated = {k: v for k, v in headers.items() if "{{" in v or "{%" in v}
    for k in templated:
        del headers[k]
    try:
        template = CallTemplate(path=path or "", params=params, headers=templated, body=body,
                                allowed=allowed_names(per), vars=vars_)
    except TemplateProblem as e:
        raise _problem(str(e)) from None
    if data.get("method") is None:
        data["method"] = "POST" if body is not None else "GET"
    data["wire"] = TemplateWire(data["url"], per, template, extract, paginator, **caps)
