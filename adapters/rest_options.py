"""YAML options of the REST ERP adapter (``type: rest``): schema and value objects.

The schema rejects unknown keys and checks combinations (``request.style:
query`` needs ``method: GET`` ...) with messages that name the key. Secrets
(tokens, passwords, client secrets) are loaded into dataclasses whose repr
hides them, so neither the loaded ``AdapterSpec`` nor a log line of it can
leak them. Messages never echo a value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from marshmallow import (RAISE, Schema, ValidationError, fields, post_load, validate,
                         validates_schema)

from atp_bridge.adapters.engine.options import ENGINE_KEYS, build_wire, engine_fields

ENGINE_FIELDS = engine_fields()

STYLES = ("pairs", "grid", "query")
AUTH_TYPES = ("bearer", "basic", "header", "oauth2_client_credentials")


def _http_url(value: str) -> None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Must be an http:// or https:// URL with a host.")


def _url_field(**kw) -> fields.String:
    return fields.String(validate=_http_url, **kw)


_NAME = validate.Length(min=1, error="Must not be empty.")
_SECRET = dict(required=True, validate=_NAME)


# -- auth -------------------------------------------------------------------

@dataclass(frozen=True)
class AuthSpec:
    """One ``auth:`` block; secret fields are left out of the repr."""

    type: str
    token: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)
    name: str = ""
    value: str = field(default="", repr=False)
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    scope: str = ""
    client_auth: str = "body"


class _AuthBase(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True)

    @post_load
    def _make(self, data, **kwargs):
        return AuthSpec(**data)


class _Bearer(_AuthBase):
    token = fields.String(**_SECRET)


class _Basic(_AuthBase):
    username = fields.String(**_SECRET)
    password = fields.String(required=True)


class _Header(_AuthBase):
    name = fields.String(required=True, validate=validate.Regexp(
        r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", error="Must be an HTTP header name like X-Api-Key."))
    value = fields.String(**_SECRET)


class _OAuth2(_AuthBase):
    token_url = _url_field(required=True)
    client_id = fields.String(**_SECRET)
    client_secret = fields.String(**_SECRET)
    scope = fields.String(load_default="")
    client_auth = fields.String(load_default="body", validate=validate.OneOf(
        ["body", "basic"], error="Must be 'body' (client_id/client_secret in the form) or "
                                  "'basic' (HTTP Basic to the token endpoint)."))


_AUTH_SCHEMAS = {"bearer": _Bearer, "basic": _Basic, "header": _Header,
                 "oauth2_client_credentials": _OAuth2}


class _AuthField(fields.Field):
    """``auth:`` is one of several shapes, chosen by its ``type``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError(f"Must be a mapping with a 'type' ({', '.join(AUTH_TYPES)}).")
        schema = _AUTH_SCHEMAS.get(value.get("type"))
        if schema is None:
            raise ValidationError({"type": [f"Must be one of: {', '.join(AUTH_TYPES)}."]})
        return schema().load(value)


# -- wire format --------------------------------------------------------------

@dataclass(frozen=True)
class RequestSpec:
    """How pairs go out. ``pairs``: a list of objects; ``grid``: products and
    locations lists in a JSON body; ``query``: comma lists in the URL (GET)."""

    style: str = "pairs"
    items: str = "items"
    product: str = "product"
    location: str = "location"
    products: str = "products"
    locations: str = "locations"
    products_param: str = "products"
    locations_param: str = "locations"
    separator: str = ","
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ResponseSpec:
    """Where the answer is: ``items`` is a dotted path to the list ('' = the
    body is the list); the rest are dotted paths inside each item."""

    items: str = "items"
    product: str = "product"
    location: str = "location"
    atp: str = "atp"


_KEYS_OF_STYLE = {"pairs": ("items", "product", "location"), "grid": ("products", "locations"),
                  "query": ("products_param", "locations_param", "separator")}


class _RequestSchema(Schema):
    class Meta:
        unknown = RAISE

    style = fields.String(load_default="pairs", validate=validate.OneOf(
        STYLES, error="Must be one of: pairs, grid, query."))
    items = fields.String(validate=_NAME)
    product = fields.String(validate=_NAME)
    location = fields.String(validate=_NAME)
    products = fields.String(validate=_NAME)
    locations = fields.String(validate=_NAME)
    products_param = fields.String(validate=_NAME)
    locations_param = fields.String(validate=_NAME)
    separator = fields.String(validate=_NAME)
    extra = fields.Dict(keys=fields.String(validate=_NAME), load_default=dict)

    @validates_schema
    def _style_keys(self, data, **kwargs):
        style = data.get("style", "pairs")
        allowed = _KEYS_OF_STYLE.get(style, ())
        for st, keys in _KEYS_OF_STYLE.items():
            for key in keys:
                if key in data and key not in allowed:
                    raise ValidationError(f"Only used with style: {st} (this request has style: "
                                          f"{style}).", field_name=key)
        if style == "query" and any(not isinstance(v, (str, int, float)) or isinstance(v, bool)
                                    for v in data.get("extra", {}).values()):
            raise ValidationError("With style: query, extra values must be strings or numbers "
                                  "(they become URL parameters).", field_name="extra")

    @post_load
    def _make(self, data, **kwargs):
        return RequestSpec(**data)


class _ResponseSchema(Schema):
    class Meta:
        unknown = RAISE

    items = fields.String(load_default="items", validate=validate.Regexp(
        r"^$|^[^.]+(\.[^.]+)*$", error="Must be a dotted path like result.rows, or '' when "
                                       "the body itself is the list."))
    product = fields.String(load_default="product", validate=_NAME)
    location = fields.String(load_default="location", validate=_NAME)
    atp = fields.String(load_default="atp", validate=_NAME)

    @post_load
    def _make(self, data, **kwargs):
        return ResponseSpec(**data)


class _CircuitSchema(Schema):
    class Meta:
        unknown = RAISE

    failure_threshold = fields.Integer(load_default=5, validate=validate.Range(min=1, max=1000))
    reset_s = fields.Float(load_default=1.0, validate=validate.Range(min=0.01, max=3600))


class Headers(dict):
    """Static headers; values may be API keys, so the repr shows names only."""

    def __repr__(self) -> str:
        return "Headers(" + ", ".join(f"{k}=***" for k in self) + ")"


# -- the adapter's options ------------------------------------------------------

class RestOptionsSchema(Schema):
    """Every key of a ``type: rest`` adapter (besides name/type/locations/match_on)."""

    class Meta:
        unknown = RAISE

    url = _url_field(required=True)
    method = fields.String(load_default=None, validate=validate.OneOf(
        ["POST", "GET"], error="Must be POST or GET."))
    auth = _AuthField(load_default=None, allow_none=True)
    timeout_ms = fields.Integer(load_default=2000, validate=validate.Range(min=1, max=60_000))
    # left out when not set: RestAdapter's default (rest_http.MAX_RESPONSE_BYTES, 16 MiB) applies
    max_response_bytes = fields.Integer(validate=validate.Range(min=1024, max=1024 ** 3))
    batch_size = fields.Integer(load_default=500, validate=validate.Range(min=1, max=100_000))
    max_concurrency = fields.Integer(load_default=4, validate=validate.Range(min=1, max=64))
    retries = fields.Integer(load_default=1, validate=validate.Range(min=0, max=10))
    request = fields.Nested(_RequestSchema, load_default=lambda: RequestSpec())
    response = fields.Nested(_ResponseSchema, load_default=lambda: ResponseSpec())
    headers = fields.Dict(keys=fields.String(validate=validate.Regexp(
        r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", error="Must be an HTTP header name.")),
        values=fields.String(), load_default=dict)
    tls_verify = fields.Boolean(load_default=True)
    ca_bundle = fields.String(load_default=None, validate=_NAME)
    health_url = _url_field(load_default=None)
    health_cache_s = fields.Float(load_default=5.0, validate=validate.Range(min=0, max=3600))
    circuit = fields.Nested(_CircuitSchema, load_default=lambda: {"failure_threshold": 5,
                                                                   "reset_s": 1.0})

    # the engine's keys (adapters/engine/options.py)
    per, vars, path, params, body, extract, paginate = (
        ENGINE_FIELDS[k] for k in ("per", "vars", "path", "params", "body", "extract", "paginate"))

    @validates_schema(pass_original=True)
    def _engine(self, data, original, **kwargs):
        build_wire(data, set(original) if isinstance(original, dict) else set())

    @validates_schema(pass_original=True)
    def _combinations(self, data, original, **kwargs):
        engine = isinstance(original, dict) and any(k in original for k in ENGINE_KEYS)
        style = data["request"].style if isinstance(data.get("request"), RequestSpec) and not engine else None
        method = data.get("method")
        if style == "query" and method == "POST":
            raise ValidationError({"request": {"style": [
                "style: query sends the pairs as URL parameters and needs method: GET "
                "(or leave method out)."]}})
        if method == "GET" and not engine and style not in (None, "query"):
            raise ValidationError("GET carries no body: use request.style: query with GET, "
                                  "or method: POST.", field_name="method")
        if data.get("ca_bundle") and data.get("tls_verify") is False:
            raise ValidationError("Has no effect with tls_verify: false; remove one of them.",
                                  field_name="ca_bundle")
        auth = data.get("auth")
        if auth is not None:
            clash = "authorization" if auth.type != "header" else auth.name.lower()
            for name in data.get("headers", {}):
                if name.lower() == clash:
                    raise ValidationError({name: ["Set by auth as well; keep only one."]},
                                          field_name="headers")

    @post_load
    def _defaults(self, data, **kwargs):
        data["headers"] = Headers(data["headers"])
        if data["method"] is None:  # (the engine sets its own in build_wire)
            data["method"] = "GET" if data["request"].style == "query" else "POST"
        return data
