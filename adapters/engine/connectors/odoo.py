"""``type: odoo``: ATP from Odoo's ``product.product`` stock quantities at a ``stock.location``.

Odoo computes ``free_qty`` (on hand minus reserved), ``qty_available`` (on
hand) and ``virtual_available`` (forecast) of a product for the locations in
the ``location`` context key (that location and its children). One call per
location (``per: location``) asks every product of the batch:
``search_read`` with the domain ``[[<product_field>, "in", [...]]]`` and the
fields ``<product_field>`` and the quantity, in the context
``{"location": <stock.location id>}``. The id is sent as a JSON integer: Odoo
reads a string there as a location *name* to search (``ilike``), not an id.
A NewStore location that is not a positive whole number after
``location_map`` (an unmapped store) is not asked: its pairs are unknown
(asking for location 0 or none would answer the stock of every warehouse).

Two APIs (``api``):

* ``json2`` (Odoo 19 and later, the default): ``POST {url}/json/2/product.product/search_read``
  with ``Authorization: bearer <api_key>`` and ``X-Odoo-Database: <database>``
  (when given), body ``{"domain", "fields", "context"}``; the answer is the
  list of records. An error is a 4xx/5xx with Odoo's error object
  (``name``, ``message``, ``arguments``, ``context``, ``debug``).
* ``jsonrpc`` (Odoo 17 and 18): ``POST {url}/jsonrpc`` with
  ``{"jsonrpc": "2.0", "method": "call", "params": {"service": "object",
  "method": "execute_kw", "args": [database, uid, api_key, "product.product",
  "search_read", [domain], {"fields", "context"}]}}``; the answer's
  ``result`` is the list. Errors come in a 200 as ``error`` (``data.message``:
  "Access Denied", "Invalid field ..."), which fail the call with that message.
  ``uid`` is the user's id; give it, or ``login`` (the user's login) and
  the bridge asks ``common.authenticate(database, login, api_key, {})`` once,
  on the first lookup, and keeps the uid it answers.

Records of one product code (``default_code`` is not unique in Odoo) are
added up; a product the answer leaves out (unknown code, archived) is unknown.

Sources: Odoo 19 "External JSON-2 API" (odoo/documentation
``content/developer/reference/external_api.rst``), Odoo 17/18 "External API"
(``execute_kw``, ``authenticate``), odoo/odoo ``odoo/http.py``
(``JsonRPCDispatcher.handle_error``, ``serialize_exception``) and
``addons/stock/models/product.py`` (``free_qty``, ``_get_domain_locations``);
see tests/vendors/fixtures/odoo/README.md.
"""
from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit

import orjson
from marshmallow import ValidationError, fields, validate

from atp_bridge.adapters.base import Batch
from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.rest_options import _http_url
from atp_bridge.adapters.rest_wire import safe_url, vendor_message
from atp_bridge.errors import AdapterError

__all__ = ["Odoo", "APIS", "JSON2_PATH", "JSONRPC_PATH", "QUANTITIES"]

log = logging.getLogger(__name__)

APIS = ("json2", "jsonrpc")
JSON2_PATH = "/json/2/product.product/search_read"
JSONRPC_PATH = "/jsonrpc"
QUANTITIES = ("free_qty", "qty_available", "virtual_available")
_LOCATION_ID = re.compile(r"[1-9][0-9]{0,9}")  # stock.location ids: positive integers
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_WARNED_MAX = 1000
_REQUIRED = {"database": "Required with api: jsonrpc: the database name.",
             "uid": "Required with api: jsonrpc: uid (the id of the API key's user) or login "
                    "(the bridge then asks common.authenticate for the uid)."}

# json2: an answer that is not the list of records is a wrong url, not "no stock"
_JSON2_ERRORS = ("type(@) != 'array' && 'no list of records in the answer (is url the Odoo "
                 "server, like https://mycompany.odoo.com?)' || `null`")
# jsonrpc: Odoo's error object arrives in a 200
_JSONRPC_ERRORS = ("error.data.message || error.message || (type(result) != 'array' && 'no result "
                   "list in the answer (is url the Odoo server, like https://mycompany.odoo.com?)') "
                   "|| `null`")


def _server_url(value: str) -> None:
    _http_url(value)
    parts = urlsplit(value)
    segments = parts.path.split("/")
    if parts.query or parts.fragment or "json" in segments or "jsonrpc" in segments \
            or "xmlrpc" in segments or "web" in segments:
        raise ValidationError("Must be the Odoo server's base URL like https://mycompany.odoo.com "
                              "(no /json/2, /jsonrpc or /web path, query or fragment).")


def _not_blank(what: str):
    def check(value: str) -> None:
        if not value or value != value.strip() or any(c in value for c in "\r\n"):
            raise ValidationError(f"Must be the {what} as Odoo shows it: not empty, no blanks around it.")
    return check


class Odoo(Connector):
    """ATP from Odoo's product quantities per stock location; see the module docstring and the README."""

    connector_fields = {
        "url": fields.String(required=True, validate=_server_url),
        "api": fields.String(load_default="json2", validate=validate.OneOf(
            APIS, error="Must be json2 (Odoo 19 and later) or jsonrpc (Odoo 17 and 18).")),
        "database": fields.String(load_default=None, validate=_not_blank("database name")),
        "api_key": fields.String(required=True, validate=_not_blank("API key")),
        "uid": fields.Integer(load_default=None, strict=True, validate=validate.Range(
            min=1, error="Must be the user's id, a whole number of at least 1.")),
        "login": fields.String(load_default=None, validate=_not_blank("user's login")),
        "product_field": fields.String(load_default="default_code", validate=validate.Regexp(
            _FIELD, error="Must be a field name of product.product like default_code or barcode.")),
        "quantity": fields.String(load_default="free_qty", validate=validate.OneOf(
            QUANTITIES, error="Must be one of: {choices} (free_qty: on hand minus reserved).")),
    }

    def __init__(self, name: str, *, wire=None, **kw):
        super().__init__(name, wire=wire, **kw)
        own = wire.template.vars if wire is not None else {}
        if own.get("api_key"):  # jsonrpc: the key travels in the body
            self.redact.add(own["api_key"])
        if own.get("api") == "json2" and own.get("database"):
            # not a secret: kept out of the redacted static headers
            self.session.headers["X-Odoo-Database"] = own["database"]
        self._warned: set[str] = set()
        self._vars = own
        self._uid_lock = threading.Lock()

    @classmethod
    def preset(cls, own: dict) -> dict:
        api, field, quantity = own["api"], own["product_field"], own["quantity"]
        if api == "jsonrpc":
            missing = [k for k in ("database",) if own[k] is None]
            if own["uid"] is None and own["login"] is None:
                missing.append("uid")
            if missing:
                raise ValidationError({k: [_REQUIRED[k]] for k in missing})
            if own["uid"] is not None and own["login"] is not None:
                raise ValidationError({"login": ["Give uid or login, not both (with login the bridge "
                                                 "asks common.authenticate for the uid)."]})
        else:
            for key in ("uid", "login"):
                if own[key] is not None:
                    raise ValidationError({key: ["Only with api: jsonrpc (json2 knows the user from the "
                                                 "API key)."]})
        domain = [[field, "in", "{{ products | unique | list }}"]]
        kwargs = {"fields": [field, quantity], "context": {"location": "{{ location | int }}"}}
        url = own["url"].rstrip("/")
        extract = {"product": field, "atp": quantity, "combine": "sum"}
        vars_ = {"api": api, "database": own["database"]}
        if api == "json2":
            body = {"domain": domain, **kwargs}
            auth = {"type": "bearer", "token": own["api_key"], "prefix": "bearer "}
            extract.update(rows="@", errors=_JSON2_ERRORS)
            path = JSON2_PATH
        else:
            vars_.update(api_key=own["api_key"], uid=own["uid"], login=own["login"])
            body = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
                "service": "object", "method": "execute_kw",
                "args": ["{{ vars.database }}", "{{ vars.uid }}", "{{ vars.api_key }}",
                         "product.product", "search_read", [domain], kwargs]}}
            auth = None
            extract.update(rows="result", errors=_JSONRPC_ERRORS)
            path = JSONRPC_PATH
        preset = {"url": url, "method": "POST", "per": "location", "path": path, "body": body,
                  "vars": vars_, "extract": extract}
        if auth:
            preset["auth"] = auth
        return preset

    def lookup(self, batch: Batch) -> dict:
        locations = list(dict.fromkeys(batch.locations))
        asked = [loc for loc in locations if _LOCATION_ID.fullmatch(loc)]
        for loc in locations:
            if loc not in asked and loc not in self._warned and len(self._warned) < _WARNED_MAX:
                self._warned.add(loc)
                log.warning("adapter %r: location %r is no stock.location id (a whole number): its "
                            "pairs are unknown; map it with location_map", self.name, loc)
        if not asked:
            return {}
        if self._vars.get("api") == "jsonrpc" and self._vars.get("uid") is None:
            self._authenticate(batch.deadline)
        return super().lookup(Batch(list(dict.fromkeys(batch.products)), asked, batch.deadline))

    def _authenticate(self, deadline: float) -> None:
        """``common.authenticate``: the uid of ``login``, asked once and kept."""
        with self._uid_lock:
            if self._vars.get("uid") is not None:
                return
            url = self.url + JSONRPC_PATH
            where = f"POST {safe_url(url)} (common.authenticate)"
            body = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
                "service": "common", "method": "authenticate",
                "args": [self._vars["database"], self._vars["login"], self._vars["api_key"], {}]}}
            _, raw, _ = self._request(url, {"data": orjson.dumps(body),
                                            "headers": {"Content-Type": "application/json"}}, deadline, where)
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                doc = None
            if not isinstance(doc, dict):
                raise AdapterError(self.name, f"{where}: the answer is not a JSON-RPC object")
            error = doc.get("error")
            if error is not None:
                message = (error.get("data") or {}).get("message") or error.get("message") \
                    if isinstance(error, dict) else None
                message = message or vendor_message(raw) or "error"
                raise AdapterError(self.name, f"{where}: {self.redact(str(message))[:200]}")
            uid = doc.get("result")
            if isinstance(uid, bool) or not isinstance(uid, int) or uid < 1:
                raise AdapterError(self.name, f"{where}: Odoo refused the login and API key (the answer "
                                              f"was {str(uid).lower() if isinstance(uid, bool) else 'no uid'}); "
                                              f"check database, login and api_key")
            self._vars["uid"] = uid

    def __repr__(self) -> str:
        return f"Odoo({self.name!r}, {safe_url(self.url)})"
