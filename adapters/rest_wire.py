"""The REST adapter's wire format: chunking a batch, encoding calls, parsing answers.

Configured entirely from YAML (:class:`~adapters.rest_options.RequestSpec`,
:class:`~adapters.rest_options.ResponseSpec`), so a new ERP needs no code.
"""
from __future__ import annotations

import email.utils
import math
import ssl
from datetime import datetime, timezone
from urllib.parse import urlsplit
from dataclasses import dataclass

import orjson
import requests

from typing import TYPE_CHECKING

from atp_bridge.adapters.base import Batch

if TYPE_CHECKING:  # annotations only: rest_options imports the engine, which imports this
    from atp_bridge.adapters.rest_options import RequestSpec, ResponseSpec


class WireError(Exception):
    """The ERP's answer has the wrong shape; the message is short and value-free
    except for the offending path and item index."""


@dataclass(frozen=True)
class Chunk:
    """The pairs of one HTTP call: either explicit ``pairs`` or a
    ``products`` x ``locations`` grid."""

    products: tuple = ()
    locations: tuple = ()
    pairs: tuple = ()

    def __len__(self) -> int:
        return len(self.pairs) or len(self.products) * len(self.locations)


def chunks(batch: Batch, spec: RequestSpec, batch_size: int) -> list[Chunk]:
    """Split ``batch`` into calls of at most ``batch_size`` pairs, product-major.

    ``pairs`` style cuts the pair list; ``grid`` and ``query`` cut the product
    list, ``max(1, batch_size // len(locations))`` products per call.
    """
    if spec.style == "pairs":
        pairs = batch.pairs()
        return [Chunk(pairs=tuple(pairs[i:i + batch_size])) for i in range(0, len(pairs), batch_size)]
    locations = tuple(batch.locations)
    per_call = max(1, batch_size // max(1, len(locations)))
    products = batch.products
    return [Chunk(products=tuple(products[i:i + per_call]), locations=locations)
            for i in range(0, len(products), per_call)]


def encode(chunk: Chunk, spec: RequestSpec) -> dict:
    """``requests.request`` keyword arguments (``data`` or ``params``) for ``chunk``."""
    if spec.style == "query":
        sep = spec.separator
        for value in (*chunk.products, *chunk.locations):
            if sep in value:
                raise WireError(f"an id contains the query separator {sep!r}; "
                                f"set request.separator to a character ids never contain")
        params = {**spec.extra, spec.products_param: sep.join(chunk.products),
                  spec.locations_param: sep.join(chunk.locations)}
        return {"params": params}
    if spec.style == "grid":
        body = {**spec.extra, spec.products: list(chunk.products), spec.locations: list(chunk.locations)}
    else:
        p, loc = spec.product, spec.location
        body = {**spec.extra, spec.items: [{p: a, loc: b} for a, b in chunk.pairs]}
    return {"data": orjson.dumps(body), "headers": {"Content-Type": "application/json"}}


def _getter(path: str):
    """A function reading dotted ``path`` from a dict (``_MISSING`` when absent)."""
    keys = path.split(".") if path else []
    if len(keys) == 1:
        key = keys[0]
        return lambda d: d.get(key, _MISSING) if isinstance(d, dict) else _MISSING

    def get(d):
        for key in keys:
            if not isinstance(d, dict):
                return _MISSING
            d = d.get(key, _MISSING)
            if d is _MISSING:
                return d
        return d
    return get


_MISSING = object()


class Parser:
    """Turns an answer body into ``{(product, location): atp}``.

    Items the ERP leaves out, and items whose atp is ``null``, are unknown.
    Numeric strings (``"5.000"``, as OData sends decimals) are accepted; any
    other non-number, NaN or infinity is an error, never a silent zero.
    """

    def __init__(self, spec: ResponseSpec):
        self.spec = spec
        self._items = _getter(spec.items)
        self._product = _getter(spec.product)
        self._location = _getter(spec.location)
        self._atp = _getter(spec.atp)

    def parse(self, body: bytes) -> dict:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise WireError(f"answer is not JSON ({e.msg} at char {e.pos})") from e
        items = self._items(doc)
        if not isinstance(items, list):
            where = f"at {self.spec.items!r}" if self.spec.items else "as the body"
            raise WireError(f"answer has no list {where} (response.items)")
        out = {}
        spec = self.spec
        for i, item in enumerate(items):
            product, location, atp = self._product(item), self._location(item), self._atp(item)
            if not isinstance(product, (str, int)) or isinstance(product, bool):
                raise WireError(f"item {i}: no string at {spec.product!r} (response.product)")
            if not isinstance(location, (str, int)) or isinstance(location, bool):
                raise WireError(f"item {i}: no string at {spec.location!r} (response.location)")
            if atp is None:
                continue
            out[(str(product), str(location))] = _number(atp, i, spec.atp)
        return out


class BuiltinWire:
    """``calls`` / ``encode`` / ``parse`` of the built-in formats (``request.style``
    and ``response`` field names); the engine's TemplateWire has the same three."""

    def __init__(self, request: RequestSpec, response: ResponseSpec):
        self.request = request
        self.parser = Parser(response)

    def calls(self, batch: Batch, batch_size: int) -> list[Chunk]:
        return chunks(batch, self.request, batch_size)

    def encode(self, chunk: Chunk) -> dict:
        return encode(chunk, self.request)

    def parse(self, body: bytes, chunk: Chunk) -> dict:
        return self.parser.parse(body)


def _number(value, i: int, path: str) -> float | int:
    if isinstance(value, bool) or value is _MISSING:
        raise WireError(f"item {i}: no number at {path!r} (response.atp)")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    raise WireError(f"item {i}: atp at {path!r} is not a finite number (response.atp)")


# -- messages -------------------------------------------------------------------

# where vendors put the message of an error body, most specific first
_VENDOR_MESSAGES = (
    ("error", "message", "value"),  # OData V2 (SAP): {"error": {"message": {"value": ...}}}
    ("error", "message"),           # OData V4 (Dynamics): {"error": {"message": ...}}
    ("error_description",),         # OAuth2 token endpoints
    ("detail",), ("title",),        # RFC 9457 problem details
)  # a bare {"message"} or {"error": "..."} says no more than the body's excerpt, which is shown


def retry_after(headers) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP
    date), or None when there is none or it cannot be read."""
    value = (headers or {}).get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def vendor_message(body: bytes) -> str | None:
    """The message a vendor put in a JSON error body, or None: OData V2/V4
    ``error.message(.value)``, GraphQL ``errors[].message``, NetSuite
    ``o:errorDetails[].detail``, OAuth2 ``error_description``, problem details."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]  # some APIs answer a list of errors
    if not isinstance(doc, dict):
        return None
    for key, field_name in (("errors", "message"), ("o:errorDetails", "detail")):
        items = doc.get(key)
        if isinstance(items, list):
            found = [str(i[field_name]) for i in items if isinstance(i, dict) and i.get(field_name)]
            if found:
                return "; ".join(found)
    for path in _VENDOR_MESSAGES:
        value = doc
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment: fit for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def describe_error(e: Exception) -> str:
    """A short cause for ``e``: 'connection refused', 'TLS error: ...'; never the
    request's URL, parameters or headers."""
    seen, cause = set(), e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        name = type(cause).__name__
        if name in ("RemoteDisconnected", "ProtocolError") and "closed" in str(cause).lower():
            return "connection closed by the ERP without an answer"
        if isinstance(cause, ssl.SSLError):  # the stdlib's, deepest in the chain
            detail = getattr(cause, "verify_message", None)
            return f"TLS error: {cause.reason or name}" + (f" ({detail})" if detail else "")
        nxt = cause.__cause__ or cause.__context__
        if nxt is None and cause.args and isinstance(cause.args[0], BaseException):
            nxt = cause.args[0]
        if nxt is None:
            reason = getattr(cause, "reason", None)
            nxt = reason if isinstance(reason, BaseException) else None
        cause = nxt
    if isinstance(e, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(e, requests.ReadTimeout):
        return "no answer (read timeout)"
    if isinstance(e, requests.exceptions.SSLError):
        return "TLS error"
    return f"{type(e).__name__}"
