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

from atp_bridge.adapters.engine.extract import ExtractProblem, compile_expression
from atp_bridge.adapters.engine.options import ENGINE_KEYS, build_wire, engine_fields
from atp_bridge.adapters.engine.templates import CallTemplate, TemplateProblem

ENGINE_FIELDS = engine_fields()

STYLES = ("pairs", "grid", "query")
AUTH_TYPES = ("bearer", "basic", "header", "oauth2_client_credentials")
CLIENT_AUTHS = ("body", "basic", "private_key_jwt")
JWT_ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512")


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
    header: str = "Authorization"   # bearer / oauth2: where the token goes,
    prefix: str = "Bearer "         # and what stands before it
    private_key: str = ""           # client_auth: private_key_jwt: a PEM file (a path)
    key_id: str = ""                # its JWT header kid
    algorithm: str = ""             # its JWT alg; "" = from the key (PS256 RSA, ES256 P-256...)
    exchange: "ExchangeSpec | None" = None  # oauth2: trade the token for another one


class _AuthBase(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True)

    @post_load
    def _make(self, data, **kwargs):
        return AuthSpec(**data)


_HEADER_NAME = validate.Regexp(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
                               error="Must be an HTTP header name like X-Api-Key.")
_PREFIX = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="Must not hold a line break or control character.")


# ``header`` / ``prefix`` of the auth types that send a token: ``Authorization: Bearer <token>``
# by default; ``header: X-Shopify-Access-Token, prefix: ""`` sends it raw
def _token_header() -> fields.String:
    return fields.String(load_default="Authorization", validate=_HEADER_NAME)


def _token_prefix() -> fields.String:
    return fields.String(load_default="Bearer ", validate=_PREFIX)


class _Bearer(_AuthBase):
    token = fields.String(**_SECRET)
    header = _token_header()
    prefix = _token_prefix()


class _Basic(_AuthBase):
    username = fields.String(**_SECRET)
    password = fields.String(required=True)


class _Header(_AuthBase):
    name = fields.String(required=True, validate=validate.Regexp(
        r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", error="Must be an HTTP header name like X-Api-Key."))
    value = fields.String(**_SECRET)


@dataclass(frozen=True)
class ExchangeSpec:
    """``auth.exchange``: the token the OAuth2 grant got is traded for the one
    sent to the ERP (Dynamics 365 Inventory Visibility's security service).
    ``template`` renders ``headers`` and ``body`` with ``token``, the first token;
    ``token`` / ``expires`` read the answer (compiled ``token_path`` / ``expires_path``)."""

    url: str
    template: CallTemplate = field(repr=False)
    encoding: str = "json"
    token_path: str = "access_token"
    expires_path: str = "expires_in"
    token: object = field(default=None, repr=False, compare=False)
    expires: object = field(default=None, repr=False, compare=False)


class _Exchange(Schema):
    """``auth.exchange`` of ``oauth2_client_credentials``: a POST of ``body``
    (JSON, or a form with ``encoding: form``) to ``url``, whose answer holds the
    token at ``token_path`` and its lifetime in seconds at ``expires_path``.
    ``body`` and ``headers`` values are templates with one name, ``token``: the
    first token (``client_assertion: "{{ token }}"``). A 307/308 is followed
    with the same POST."""

    class Meta:
        unknown = RAISE

    url = _url_field(required=True)
    headers = fields.Dict(keys=fields.String(validate=validate.Regexp(
        r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", error="Must be an HTTP header name.")),
        values=fields.String(), load_default=dict)
    body = fields.Dict(keys=fields.String(validate=_NAME), required=True)
    encoding = fields.String(load_default="json", validate=validate.OneOf(
        ["json", "form"], error="Must be 'json' (a JSON body) or 'form' (application/x-www-form-urlencoded)."))
    token_path = fields.String(load_default="access_token", validate=_NAME)
    expires_path = fields.String(load_default="expires_in", validate=_NAME)

    @post_load
    def _make(self, data, **kwargs):
        if data["encoding"] == "form":
            for key, value in data["body"].items():
                if isinstance(value, (dict, list)) or value is None:
                    raise ValidationError("With encoding: form, every value must be a string or "
                                          "a number (form fields are flat).", field_name=f"body.{key}")
        try:
            template = CallTemplate(headers=data["headers"], body=data["body"], allowed=frozenset({"token"}))
            readers = {k: compile_expression(data[f"{k}_path"], f"{k}_path") for k in ("token", "expires")}
        except (TemplateProblem, ExtractProblem) as e:
            key, _, msg = str(e).partition(": ")
            raise ValidationError(msg, field_name=key) from None
        return ExchangeSpec(url=data["url"], template=template, encoding=data["encoding"],
                            token_path=data["token_path"], expires_path=data["expires_path"], **readers)


class _OAuth2(_AuthBase):
    token_url = _url_field(required=True)
    client_id = fields.String(**_SECRET)
    client_secret = fields.String(validate=_NAME)
    scope = fields.String(load_default="")
    client_auth = fields.String(load_default="body", validate=validate.OneOf(
        CLIENT_AUTHS, error="Must be 'body' (client_id/client_secret in the form), 'basic' (HTTP "
                            "Basic to the token endpoint) or 'private_key_jwt' (a signed JWT "
                            "assertion, RFC 7523)."))
    header = _token_header()
    prefix = _token_prefix()
    exchange = fields.Nested(_Exchange, load_default=None)
    # client_auth: private_key_jwt (RFC 7523): the assertion is signed with this PEM key
    private_key = fields.String(validate=_NAME)
    key_id = fields.String(validate=_NAME)
    algorithm = fields.String(validate=validate.OneOf(
        JWT_ALGORITHMS, error=f"Must be one of: {', '.join(JWT_ALGORITHMS)} (or leave it out: "
                              f"PS256 for an RSA key, ES256/384/512 for an EC key)."))

    @validates_schema
    def _client_auth_keys(self, data, **kwargs):
        jwt = data.get("client_auth") == "private_key_jwt"
        need, refuse = (("private_key",), ("client_secret",)) if jwt else (("client_secret",),
                                                                          ("private_key", "key_id", "algorithm"))
        for key in need:
            if key not in data:
                raise ValidationError("Missing data for required field." + (
                    " (client_auth: private_key_jwt signs its assertion with this PEM file)" if jwt else ""),
                    field_name=key)
        for key in refuse:
            if key in data:
                raise ValidationError("Only with client_auth: private_key_jwt." if not jwt else
                                      "Not used with client_auth: private_key_jwt (the signed "
                                      "assertion replaces the secret); remove it.", field_name=key)


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
    per, vars, path, params, body, extract, paginate, max_products, max_locations = (
        ENGINE_FIELDS[k] for k in ("per", "vars", "path", "params", "body", "extract", "paginate",
                                   "max_products", "max_locations"))

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
            clash = (auth.name if auth.type == "header" else auth.header).lower()
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
