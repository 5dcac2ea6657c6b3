"""A loopback stand-in for an Odoo server's external APIs, from Odoo's documentation.

Two endpoints, on a :class:`tests.erp_server.FakeErp` (its faults and logs apply):

* ``POST /json/2/<model>/<method>`` (Odoo 19's JSON-2 API): ``Authorization:
  bearer <api_key>`` (anything else: the documented 401 ``Invalid apikey``
  error object), ``X-Odoo-Database`` (a database this server does not host:
  404 ``werkzeug.exceptions.NotFound``; left out: the one database),
  ``Content-Type: application/json``; the body's keys are the method's
  parameters (``domain``, ``fields``) plus ``context``; another key is the
  method's ``TypeError`` (``got an unexpected keyword argument``), 422.
  Success: 200 and the list of records.
* ``POST /jsonrpc`` (Odoo 17/18): ``{"jsonrpc": "2.0", "method": "call",
  "params": {"service", "method", "args"}}``; ``common.authenticate(db,
  login, key, {})`` answers the uid (or false); ``object.execute_kw(db, uid,
  key, model, method, args, kwargs)`` answers ``{"result": [...]}``. Every
  error is a 200 with ``error`` = ``{"code": 200, "message": "Odoo Server
  Error", "data": {"name", "debug", "message", "arguments", "context"}}``
  (``AccessDenied`` "Access Denied" for a wrong key, uid or database).

Only ``product.product`` / ``search_read`` is served (another model or method:
refused). What it checks, as Odoo would: the domain is a list of
``[field, "in", [values]]`` conditions on known fields; ``fields`` are known
``product.product`` fields (else ``ValueError: Invalid field 'x' on model
'product.product'``); the ``location`` context key: an int (or list of ints)
is a ``stock.location`` id, a string is a location *name* searched with
``ilike`` (``_get_domain_locations``), so a string id like ``"8"`` finds no
location and every quantity is 0 (recorded in ``refusals``: the connector must
send ints); no location, or a false one (0, empty), is every warehouse's stock (the sum).

State: ``products`` ({default_code: product id}, made on first use),
``stock`` ({(default_code, location id): free_qty, or a dict of the three
quantities}), ``location_names`` ({id: complete_name}), ``barcodes``
({default_code: barcode}). ``asked`` records each accepted search: api,
products (the domain's values), field, fields, location (as sent). A location's
children are not modelled. ``throttle(n, retry_after)``: the next ``n`` calls
are a 429 with ``Retry-After`` (Odoo documents no rate limit of its own: this
is the reverse proxy's or Odoo.sh's). Fixtures: ``fixtures/odoo/README.md``.
"""
from __future__ import annotations

import threading
from pathlib import Path

import orjson

from tests.erp_server import FakeErp

FIXTURES = Path(__file__).parent / "fixtures" / "odoo"
JSON2 = "/json/2/"
QUANTITIES = ("free_qty", "qty_available", "virtual_available")
FIELDS = frozenset({"id", "name", "display_name", "default_code", "barcode", "active", "type",
                    "uom_id", "product_tmpl_id", "incoming_qty", "outgoing_qty", *QUANTITIES})


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


def error_object(name: str, message: str, arguments=None) -> dict:
    """Odoo's ``serialize_exception`` of an exception ``name`` with ``message``."""
    return {"name": name, "message": message, "arguments": list(arguments or [message]), "context": {},
            "debug": f"Traceback (most recent call last):\n  File \"/opt/odoo/odoo/http.py\", in "
                     f"_serve_db\n  ...\n{name}: {message}\n"}


class OdooError(Exception):
    def __init__(self, name: str, message: str, status: int = 422):
        super().__init__(message)
        self.name, self.message, self.status = name, message, status


class Odoo(FakeErp):
    """The stand-in; see the module docstring."""

    def __init__(self, api_key: str = "6578616d706c65206a736f6e20617069206b6579", database: str = "mycompany",
                 uid: int = 7, login: str = "atp-bridge@example.com"):
        super().__init__()
        self.respond = Odoo._respond
        self.api_key, self.database, self.uid, self.login = api_key, database, uid, login
        self.products: dict[str, int] = {}
        self.barcodes: dict[str, str] = {}
        self.location_names: dict[int, str] = {8: "WH/Stock", 19: "SF/Stock", 27: "WH/Stock/Shelf 1"}
        self.asked: list[dict] = []
        self.refusals: list[str] = []
        self._throttle: list[str] = []
        self._odoo_lock = threading.Lock()

    def throttle(self, n: int, retry_after: str = "1") -> None:
        self._throttle = [retry_after] * n

    def search_calls(self, api: str = "json2"):
        return self.requests("/json/2/product.product/search_read" if api == "json2" else "/jsonrpc")

    # -- the endpoints ---------------------------------------------------------

    def _respond(self, seen):
        with self._odoo_lock:
            retry_after = self._throttle.pop() if self._throttle else None
        if retry_after is not None:
            return 429, b"Too Many Requests", {"Retry-After": retry_after}
        if seen.method != "POST":
            return 405, error_object("werkzeug.exceptions.MethodNotAllowed", "405 Method Not Allowed")
        if seen.path.startswith(JSON2):
            return self._json2(seen)
        if seen.path == "/jsonrpc":
            return self._jsonrpc(seen)
        return 404, error_object("werkzeug.exceptions.NotFound", "404 Not Found")

    def _refuse(self, reason: str, status: int = 422, name: str = "builtins.ValueError"):
        self.refusals.append(reason)
        raise OdooError(name, reason, status)

    def _json2(self, seen):
        scheme, _, key = seen.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key != self.api_key:
            return 401, fixture("json2_error_401.json")
        database = seen.headers.get("x-odoo-database")
        if database is not None and database != self.database:
            return 404, error_object("werkzeug.exceptions.NotFound", "404 Not Found")
        try:
            if not seen.headers.get("content-type", "").startswith("application/json"):
                self._refuse("Content-Type must be application/json", 415,
                             "werkzeug.exceptions.UnsupportedMediaType")
            model, _, method = seen.path[len(JSON2):].partition("/")
            try:
                body = seen.json()
            except ValueError:
                self._refuse("the body is not JSON", 400, "werkzeug.exceptions.BadRequest")
            if not isinstance(body, dict):
                self._refuse("the body must be a JSON object", 400, "werkzeug.exceptions.BadRequest")
            context = body.pop("context", {})
            return 200, self._search_read("json2", model, method, body, context)
        except OdooError as e:
            return e.status, error_object(e.name, e.message)

    def _jsonrpc(self, seen):
        try:
            req = seen.json()
        except ValueError:
            return 200, {"jsonrpc": "2.0", "id": None, "error": {
                "code": 200, "message": "Odoo Server Error",
                "data": error_object("werkzeug.exceptions.BadRequest", "Invalid JSON data")}}
        rid = req.get("id") if isinstance(req, dict) else None
        try:
            if not (isinstance(req, dict) and req.get("jsonrpc") == "2.0" and req.get("method") == "call"
                    and isinstance(req.get("params"), dict)):
                self._refuse("not a JSON-RPC 2.0 call", 400, "werkzeug.exceptions.BadRequest")
            params = req["params"]
            service, method, args = params.get("service"), params.get("method"), params.get("args")
            if not isinstance(args, list):
                self._refuse("params.args must be a list", 400, "werkzeug.exceptions.BadRequest")
            if (service, method) == ("common", "authenticate"):
                db, login, key = (args + [None] * 3)[:3]
                ok = db == self.database and login == self.login and key == self.api_key
                return 200, {"jsonrpc": "2.0", "id": rid, "result": self.uid if ok else False}
            if (service, method) != ("object", "execute_kw"):
                self._refuse(f"the stand-in serves common.authenticate and object.execute_kw, not "
                             f"{service}.{method}", 200, "builtins.KeyError")
            if len(args) not in (6, 7):
                self._refuse(f"execute_kw takes 6 or 7 arguments, got {len(args)}", 200, "builtins.TypeError")
            db, uid, key, model, method, pos = args[:6]
            kwargs = args[6] if len(args) == 7 else {}
            if db != self.database or uid != self.uid or key != self.api_key or isinstance(uid, bool):
                raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")
            if not (isinstance(pos, list) and len(pos) == 1 and isinstance(kwargs, dict)):
                self._refuse("search_read takes the domain as its one positional argument", 200,
                             "builtins.TypeError")
            kwargs = dict(kwargs)
            context = kwargs.pop("context", {})
            result = self._search_read("jsonrpc", model, method, {"domain": pos[0], **kwargs}, context)
            return 200, {"jsonrpc": "2.0", "id": rid, "result": result}
        except OdooError as e:
            return 200, {"jsonrpc": "2.0", "id": rid, "error": {
                "code": 200, "message": "Odoo Server Error", "data": error_object(e.name, e.message)}}

    # -- product.product.search_read -------------------------------------------------

    def _search_read(self, api: str, model: str, method: str, kwargs: dict, context) -> list:
        if model != "product.product":
            self._refuse(f"Object {model} doesn't exist", 404, "werkzeug.exceptions.NotFound")
        if method != "search_read":
            self._refuse(f"the stand-in serves search_read, not {method}", 404, "werkzeug.exceptions.NotFound")
        unexpected = set(kwargs) - {"domain", "fields"}
        if unexpected:
            self._refuse(f"BaseModel.search_read() got an unexpected keyword argument '{sorted(unexpected)[0]}'",
                         422, "builtins.TypeError")
        domain, fields = kwargs.get("domain", []), kwargs.get("fields", [])
        if not isinstance(context, dict):
            self._refuse("context must be an object", 422)
        if not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
            self._refuse("fields must be a list of field names", 422)
        for f in fields:
            if f not in FIELDS:
                self._refuse(f"Invalid field {f!r} on model 'product.product'")
        if not isinstance(domain, list):
            self._refuse("Invalid domain: not a list", 422)
        wanted: dict[str, list] = {}
        for term in domain:
            if not (isinstance(term, list) and len(term) == 3 and term[0] in FIELDS and term[1] == "in"
                    and isinstance(term[2], list)):
                self._refuse(f"Invalid domain term {term!r}")
            if not all(isinstance(v, str) for v in term[2]):
                self._refuse(f"the stand-in expects string values in {term!r}")
            wanted[term[0]] = term[2]
        codes = list(self.products) + [c for c, _ in self.stock if c not in self.products]
        codes = list(dict.fromkeys(codes))
        for field, values in wanted.items():
            if field == "default_code":
                codes = [c for c in codes if c in values]
            elif field == "barcode":
                codes = [c for c in codes if self.barcodes.get(c) in values]
            else:
                self._refuse(f"the stand-in filters on default_code or barcode, not {field}")
        location = context.get("location", None)
        location_ids = self._location_ids(location)
        self.asked.append({"api": api, "products": next(iter(wanted.values()), None),
                           "field": next(iter(wanted), None), "fields": fields, "location": location,
                           "context": context})
        out = []
        for code in codes:
            pid = self.products.setdefault(code, 100 + len(self.products))
            row = {"id": pid}
            for f in fields:
                if f in QUANTITIES:
                    row[f] = sum(self._qty(code, loc, f) for loc in location_ids)
                elif f == "default_code":
                    row[f] = code
                elif f == "barcode":
                    row[f] = self.barcodes.get(code, False)
                elif f != "id":
                    row[f] = False
            out.append(row)
        return out

    def _location_ids(self, location) -> list[int]:
        """``_get_domain_locations``: ints are ids, strings names searched with ilike,
        nothing is every location."""
        if not location:  # None, False, 0, "", []: Odoo's "if location" is false
            return sorted({loc for _, loc in self.stock} | set(self.location_names))
        values = location if isinstance(location, list) else [location]
        ids = set()
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                ids.add(v)
            else:
                self.refusals.append(f"location {v!r} is no id: searched as a name")
                ids |= {i for i, name in self.location_names.items() if str(v).lower() in name.lower()}
        return sorted(ids)

    def _qty(self, code: str, location: int, field: str) -> float:
        value = self.stock.get((code, location))
        if value is None:
            return 0.0
        if isinstance(value, dict):
            return value.get(field, 0.0)
        return float(value)
