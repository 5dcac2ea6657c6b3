"""A loopback stand-in for SAP S/4HANA's two read APIs, written from SAP's
published metadata (tests/vendors/fixtures/sap/README.md lists the sources).

Under ``/sap/opu/odata/sap/`` it serves:

* ``API_PRODUCT_AVAILY_INFO_BASIC/DetermineAvailabilityAt`` (GET only): all
  four parameters must be there as OData literals (``'1710'`` with ``''`` for
  a quote, ``datetimeoffset'2026-12-01T09:00:00Z'``) within the EDMX's
  lengths; the answer is the fixture's ``AvailabilityRecord`` with
  ``AvailableQuantityInBaseUnit`` from ``availability[(material, plant)]``
  (``"0.000"`` for a pair it does not hold).
* ``API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod``: ``$filter`` is parsed (``eq``
  on the entity's properties, ``and``, ``or``, parentheses, string literals)
  and applied to ``stock`` (rows added with :meth:`SapS4.add_stock`);
  ``$select``, ``$top``, ``$skip``, ``$inlinecount`` work; without ``$top``
  the server pages by ``page_size`` (100, like SADL) with an absolute
  ``d.__next`` holding the query and a ``$skiptoken``.
* ``$metadata`` of both services (for ``health_url``).

Anything it does not accept is a 400 with the OData V2 error body. JSON only
when asked (``Accept: application/json`` or ``$format=json``), else an Atom
body. Credentials: ``auth`` is ``("basic", user, password)``, ``("header",
name, value)`` (the API Hub sandbox's ``APIKey``), ``("bearer",)`` (tokens of
FakeErp's ``/token``) or None; a wrong one is a 401 with the error body.
:meth:`throttle` makes the next calls a 429 with ``Retry-After``;
:meth:`odata_error_next` injects an error body.
"""
from __future__ import annotations

import base64
import copy
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import orjson

from tests.erp_server import HOSTILE_MODES, FakeErp, Seen

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sap"
AVAILY = "/sap/opu/odata/sap/API_PRODUCT_AVAILY_INFO_BASIC"
STOCK = "/sap/opu/odata/sap/API_MATERIAL_STOCK_SRV"
FUNCTION_PARAMS = {"SupplyingPlant": 4, "Material": 40, "ATPCheckingRule": 2}  # name -> MaxLength (EDMX)
STOCK_KEYS = ("Material", "Plant", "StorageLocation", "Batch", "Supplier", "Customer", "WBSElementInternalID",
              "SDDocument", "SDDocumentItem", "InventorySpecialStockType", "InventoryStockType")
STOCK_PROPERTIES = (*STOCK_KEYS, "WBSElementExternalID", "MaterialBaseUnit", "MatlWrhsStkQtyInMatlBaseUnit")
STOCK_NAVIGATION = ("to_MaterialSerialNumber", "to_MaterialStock")
DATETIMEOFFSET = re.compile(r"^datetimeoffset'(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?)"
                            r"(Z|[+-]\d{2}:\d{2})'$")


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


def odata_error(status: int, code: str, message: str, headers: dict | None = None):
    body = copy.deepcopy(fixture("error.json"))
    body["error"]["code"], body["error"]["message"]["value"] = code, message
    return (status, body, headers) if headers else (status, body)


class BadRequest(Exception):
    """A request SAP would refuse: becomes a 400 with the OData error body."""


def string_literal(text: str, name: str, max_length: int | None = None) -> str:
    """The value of an OData string literal (``'it''s'`` -> ``it's``)."""
    if len(text) < 2 or text[0] != "'" or text[-1] != "'" or "'" in text[1:-1].replace("''", ""):
        raise BadRequest(f"Invalid literal for parameter {name}: {text!r}")
    value = text[1:-1].replace("''", "'")
    if max_length is not None and len(value) > max_length:
        raise BadRequest(f"Value of parameter {name} exceeds the maximum length of {max_length}")
    return value


# -- $filter: eq, and, or, parentheses --------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<str>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")


def parse_filter(text: str, properties=STOCK_PROPERTIES):
    """A predicate on a row for an OData V2 ``$filter`` of ``eq`` comparisons."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if not text[pos:].strip():
                break
            raise BadRequest(f"Invalid filter expression at position {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    tokens.append(("end", ""))
    at = [0]

    def peek():
        return tokens[at[0]]

    def take(kind, value=None):
        tok = tokens[at[0]]
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise BadRequest(f"Invalid filter expression: expected {value or kind} but found {tok[1]!r}")
        at[0] += 1
        return tok[1]

    def or_expr():
        terms = [and_expr()]
        while peek() == ("word", "or"):
            take("word")
            terms.append(and_expr())
        return terms[0] if len(terms) == 1 else (lambda row: any(t(row) for t in terms))

    def and_expr():
        terms = [atom()]
        while peek() == ("word", "and"):
            take("word")
            terms.append(atom())
        return terms[0] if len(terms) == 1 else (lambda row: all(t(row) for t in terms))

    def atom():
        if peek()[0] == "lp":
            take("lp")
            inner = or_expr()
            take("rp")
            return inner
        prop = take("word")
        if prop not in properties:
            raise BadRequest(f"Property {prop} not found in type A_MatlStkInAcctModType")
        take("word", "eq")
        value = string_literal(take("str"), prop)
        return lambda row: row.get(prop) == value

    predicate = or_expr()
    take("end")
    return predicate


class SapS4(FakeErp):
    """The stand-in; see the module docstring. ``availability``: {(material,
    plant): quantity}; ``stock``: rows of A_MatlStkInAcctMod."""

    def __init__(self, ssl_context=None):
        super().__init__(ssl_context)
        self.respond = SapS4._route
        self.availability: dict[tuple[str, str], object] = {}
        self.stock: list[dict] = []
        self.page_size = 100      # server-side page without $top (SADL's default)
        self.max_top = 5000       # server-side page with a larger $top
        self.auth: tuple | None = ("basic", "ATP_BRIDGE", "s3cret-Passw0rd")
        self._throttle: list[str] = []
        self._errors: list[tuple] = []

    # -- test controls ---------------------------------------------------------

    def add_stock(self, material: str, plant: str, storage_location: str, quantity, stock_type: str = "01",
                  batch: str = "", special: str = "", unit: str = "PC") -> None:
        row = dict.fromkeys(STOCK_PROPERTIES, "")
        row.update(Material=material, Plant=plant, StorageLocation=storage_location, Batch=batch,
                   WBSElementInternalID="00000000", SDDocumentItem="000000",
                   InventorySpecialStockType=special, InventoryStockType=stock_type, MaterialBaseUnit=unit,
                   MatlWrhsStkQtyInMatlBaseUnit=f"{Decimal(str(quantity)):.3f}")
        self.stock.append(row)

    def throttle(self, n: int, retry_after: str = "1") -> None:
        """The next ``n`` data calls answer 429 with ``Retry-After: retry_after``."""
        self._throttle = [retry_after] * n

    def odata_error_next(self, n: int, status: int, message: str, code: str = "STANDIN/ERROR") -> None:
        self._errors = [(status, code, message)] * n

    def calls(self, service: str = STOCK, name: str = "A_MatlStkInAcctMod") -> list[Seen]:
        return self.requests(f"{service}/{name}")

    # -- handling ----------------------------------------------------------------

    def handle(self, seen: Seen):
        if seen.path == "/token" or self.mode in HOSTILE_MODES:
            return super().handle(seen)
        if not seen.path.startswith((AVAILY + "/", STOCK + "/")):
            return odata_error(404, "STANDIN/404", f"No service found for {seen.path}")
        denied = self._check_auth(seen)
        if denied is not None:
            return denied
        with self._lock:
            retry_after = self._throttle.pop() if self._throttle else None
            error = self._errors.pop() if self._errors and retry_after is None else None
        if retry_after is not None:
            return odata_error(429, "STANDIN/429", "Too many requests; try again later",
                               {"Retry-After": retry_after})
        if error is not None:
            status, code, message = error
            return odata_error(status, code, message)
        return super().handle(seen)  # FakeErp's modes, fail_next, then _route

    def _check_auth(self, seen: Seen):
        if self.auth is None:
            return None
        kind, *want = self.auth
        got = seen.headers.get("authorization", "")
        if kind == "basic":
            ok = got == "Basic " + base64.b64encode(f"{want[0]}:{want[1]}".encode()).decode()
        elif kind == "header":
            ok = seen.headers.get(want[0].lower()) == want[1]
        else:
            ok = got.startswith("Bearer ") and got[7:] in self.valid_tokens
        if ok:
            return None
        return odata_error(401, "STANDIN/401", "Logon failed: user, password or token not accepted",
                           {"WWW-Authenticate": 'Basic realm="SAP NetWeaver Application Server [S4H/100]"'})

    @staticmethod
    def _route(erp: "SapS4", seen: Seen):
        query = dict(parse_qsl(urlsplit(seen.target).query, keep_blank_values=True))
        if seen.method != "GET":
            return odata_error(405, "STANDIN/405", f"Method {seen.method} not allowed; use GET")
        if seen.body:
            return odata_error(400, "STANDIN/400", "A GET request has no body")
        if seen.path.endswith("/$metadata"):
            return 200, b'<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="1.0"/>'
        if "json" not in seen.headers.get("accept", "") and query.get("$format") != "json":
            return 200, b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"/>'
        try:
            if seen.path == f"{AVAILY}/DetermineAvailabilityAt":
                return erp._availability(query)
            if seen.path == f"{STOCK}/A_MatlStkInAcctMod":
                return erp._stock(seen, query)
        except BadRequest as e:
            return odata_error(400, "STANDIN/400", str(e))
        return odata_error(404, "STANDIN/404", f"Resource not found for segment {seen.path.rsplit('/', 1)[-1]}")

    def _availability(self, query: dict):
        missing = [p for p in (*FUNCTION_PARAMS, "RequestedUTCDateTime") if p not in query]
        if missing:
            raise BadRequest(f"Parameter {missing[0]} of function import DetermineAvailabilityAt is missing")
        values = {name: string_literal(query[name], name, n) for name, n in FUNCTION_PARAMS.items()}
        when = DATETIMEOFFSET.match(query["RequestedUTCDateTime"])
        if not when:
            raise BadRequest(f"Invalid literal for parameter RequestedUTCDateTime: {query['RequestedUTCDateTime']!r}")
        stamp = datetime.fromisoformat(when[1] + ("+00:00" if when[2] == "Z" else when[2]))
        body = copy.deepcopy(fixture("determine_availability_at.json"))
        record = body["d"]["DetermineAvailabilityAt"]
        record["PeriodStartUTCDateTime"] = f"/Date({int(stamp.timestamp() * 1000)})/"
        qty = self.availability.get((values["Material"], values["SupplyingPlant"]), 0)
        record["AvailableQuantityInBaseUnit"] = f"{Decimal(str(qty)):.3f}"
        return 200, body

    def _stock(self, seen: Seen, query: dict):
        known = {"$filter", "$select", "$top", "$skip", "$skiptoken", "$inlinecount", "$format", "$orderby"}
        for name in query:
            if name.startswith("$") and name not in known:
                raise BadRequest(f"System query option {name} is not supported")
        rows = self.stock
        if "$filter" in query:
            keep = parse_filter(query["$filter"])
            rows = [r for r in rows if keep(r)]
        select = None
        if "$select" in query:
            select = query["$select"].split(",")
            for name in select:
                if name not in (*STOCK_PROPERTIES, *STOCK_NAVIGATION):
                    raise BadRequest(f"Property {name} not found in type A_MatlStkInAcctModType")
        top = _count(query, "$top")
        skip = _count(query, "$skip") or 0
        start = skip + (_count(query, "$skiptoken") or 0)
        end_of_query = len(rows) if top is None else min(len(rows), skip + top)
        page = self.page_size if top is None else min(top, self.max_top)
        end = min(start + page, end_of_query)
        d = {"results": [self._entity(r, select) for r in rows[start:end]]}
        if query.get("$inlinecount") == "allpages":
            d["__count"] = str(len(rows))
        if end < end_of_query:
            rest = [(k, v) for k, v in query.items() if k != "$skiptoken"] + [("$skiptoken", str(end - skip))]
            d["__next"] = (f"{self.url}{seen.path}?"
                           + "&".join(f"{k}={quote(v, safe=chr(39) + ',()$')}" for k, v in rest))
        return 200, {"d": d}

    def _entity(self, row: dict, select) -> dict:
        keys = ",".join(f"{k}='{row[k]}'" for k in STOCK_KEYS)
        uri = f"{self.url}{STOCK}/A_MatlStkInAcctMod({keys})"
        entity = {"__metadata": {"id": uri, "uri": uri, "type": "API_MATERIAL_STOCK_SRV.A_MatlStkInAcctModType"}}
        for name in (select or (*STOCK_PROPERTIES, *STOCK_NAVIGATION)):
            entity[name] = row[name] if name in row else {"__deferred": {"uri": f"{uri}/{name}"}}
        return entity


def _count(query: dict, name: str) -> int | None:
    if name not in query:
        return None
    if not query[name].isdigit():
        raise BadRequest(f"Invalid value for system query option {name}: {query[name]!r}")
    return int(query[name])
