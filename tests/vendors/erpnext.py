"""A loopback stand-in for an ERPNext site's REST API (Frappe), from Frappe's documentation.

One endpoint, on a :class:`tests.erp_server.FakeErp` (its faults and logs apply):
``GET /api/resource/Bin`` (a Frappe list call), answering ``{"data": [...]}``
with the Bins of ``stock`` ({(item_code, warehouse): actual_qty, or a dict of
Bin fields}) and ``bins`` (more Bins, several per pair if need be), ordered
by name, the fields asked for in ``fields``, ``limit_start`` /
``limit_page_length`` rows.

What it checks, answering as Frappe does when something is wrong:

* the request line: longer than gunicorn's 4094 bytes is gunicorn's 400 page
  ("Request Line is too large (N > 4094)");
* ``Authorization``: ``token <api_key>:<api_secret>`` (or ``Basic`` of the
  same): a wrong or malformed one is the 401 ``AuthenticationError`` body; none
  at all is the Guest user, the 403 ``PermissionError`` body (so is a key whose
  user may not read Bins: ``permitted = False``);
* the query: exactly ``fields``, ``filters``, ``order_by``, ``limit_start``
  and ``limit_page_length``, once each; ``fields`` a JSON list of the Bin
  doctype's fields (another is the 417 ``Field not permitted in query``, so
  is one in ``missing_fields``); ``filters`` a JSON list of
  ``["item_code", "in", [...]]`` and at most one ``["warehouse", "in", [...]]``
  whose values are strings (anything else is a 417 naming the reason, kept
  in ``refusals``: an id that broke out of its JSON string lands here);
  ``order_by=name asc`` (paging needs a stable order);
* ``throttle(n, retry_after)``: the next ``n`` calls are Frappe's rate
  limiter's 429 ``Too Many Requests`` with ``Retry-After``.

``tracebacks = False`` answers error bodies as a production site does
(without ``exception`` and ``exc``). ``asked`` records each accepted call:
items, warehouses (None: not filtered), fields, start and limit. Matching is
exact (a MariaDB site compares case-insensitively; ids should match ERPNext's).
FakeErp labels every answer ``application/json``, the text and HTML ones too.
Fixtures and where each comes from: ``fixtures/erpnext/README.md``.
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote

import orjson

from atp_bridge.adapters.engine.connectors.erpnext import BIN_PATH
from tests.erp_server import FakeErp

FIXTURES = Path(__file__).parent / "fixtures" / "erpnext"
RESOURCE = "/api/resource/"
LIMIT_REQUEST_LINE = 4094  # gunicorn's default limit_request_line
PARAMS = {"fields", "filters", "order_by", "limit_start", "limit_page_length"}
QUANTITY_FIELDS = ("actual_qty", "reserved_qty", "projected_qty", "ordered_qty", "indented_qty",
                   "planned_qty", "reserved_qty_for_production", "reserved_qty_for_sub_contract")


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


_DOCTYPE = fixture("bin_fields.json")
BIN_FIELDS = frozenset(_DOCTYPE["fields"]) | frozenset(_DOCTYPE["standard"])


def frappe_error(exc_type: str, message: str | None = None, tracebacks: bool = True) -> dict:
    """A Frappe error body of the fixtures' shape for ``exc_type`` (its last
    traceback line ``frappe.exceptions.<exc_type>: <message>``)."""
    last = f"frappe.exceptions.{exc_type}" + (f": {message}" if message else "")
    body = {}
    if tracebacks:
        body["exception"] = last
    body["exc_type"] = exc_type
    if tracebacks:
        body["exc"] = json.dumps([f"Traceback (most recent call last):\n  File \"apps/frappe/frappe/app.py\", "
                                  f"in application\n{last}\n"])
    if message:
        body["_server_messages"] = json.dumps([json.dumps({"message": message, "title": "Message",
                                                           "indicator": "red", "raise_exception": 1})])
    return body


def _flt(value) -> float:
    """Frappe's ``flt``: a number, or 0 for what is not one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def gunicorn_400(message: str) -> bytes:
    """gunicorn's error page (``gunicorn.util.write_error``) for a 400."""
    escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (f"<html>\n  <head>\n    <title>Bad Request</title>\n  </head>\n  <body>\n"
            f"    <h1><p>Bad Request</p></h1>\n    {escaped}\n  </body>\n</html>\n").encode()


class ERPNext(FakeErp):
    """The stand-in; see the module docstring."""

    def __init__(self, api_key: str = "4d8c1f0a9b2e7f3", api_secret: str = "a91c2e5b7d0f3468",
                 user: str = "atp-bridge@example.com"):
        super().__init__()
        self.respond = ERPNext._respond
        self.api_key, self.api_secret, self.user = api_key, api_secret, user
        self.bins: list[dict] = []
        self.permitted = True
        self.tracebacks = True
        self.missing_fields: set[str] = set()
        self.asked: list[dict] = []
        self.refusals: list[str] = []
        self._throttle: list[str] = []
        self._erpnext_lock = threading.Lock()

    def throttle(self, n: int, retry_after: str = "1") -> None:
        self._throttle = [retry_after] * n

    def bin_calls(self):
        return self.requests(BIN_PATH)

    def add_bin(self, item_code: str, warehouse: str, actual_qty=0.0, reserved_qty=0.0, **more) -> None:
        self.bins.append({"item_code": item_code, "warehouse": warehouse, "actual_qty": actual_qty,
                          "reserved_qty": reserved_qty, **more})

    def all_bins(self) -> list[dict]:
        """Every Bin, named ``MAT-BIN-2024-NNNNN`` in the order they were made."""
        made = []
        for (item, warehouse), value in list(self.stock.items()):
            fields = dict(value) if isinstance(value, dict) else {"actual_qty": value}
            made.append({"item_code": item, "warehouse": warehouse, **fields})
        made += [dict(b) for b in self.bins]
        out = []
        for i, b in enumerate(made, start=1):
            row = {f: 0.0 for f in QUANTITY_FIELDS}
            row.update(b)
            if "projected_qty" not in b:  # Bin.set_projected_qty, for a Bin without orders
                row["projected_qty"] = _flt(row["actual_qty"]) - _flt(row["reserved_qty"])
            row.setdefault("name", f"MAT-BIN-2024-{i:05d}")
            row.setdefault("stock_uom", "Nos")
            out.append(row)
        return sorted(out, key=lambda r: r["name"])

    # -- the endpoint ----------------------------------------------------------

    def _error(self, status: int, exc_type: str, message: str | None = None):
        return status, frappe_error(exc_type, message, self.tracebacks)

    def _fixture_error(self, status: int, name: str, replace: tuple[str, str] | None = None):
        body = fixture(name)
        if replace:
            body = {k: v.replace(*replace) for k, v in body.items()}
        if not self.tracebacks:
            body.pop("exception", None)
            body.pop("exc", None)
        return status, body

    def _refuse(self, reason: str):
        self.refusals.append(reason)
        return self._error(417, "ValidationError", reason)

    def _respond(self, seen):
        line = len(f"{seen.method} {seen.target} HTTP/1.1")
        if line > LIMIT_REQUEST_LINE:
            return 400, gunicorn_400(f"Request Line is too large ({line} > {LIMIT_REQUEST_LINE})")
        with self._erpnext_lock:  # the rate limiter comes first, before the user is known
            retry_after = self._throttle.pop() if self._throttle else None
        if retry_after is not None:
            return 429, (FIXTURES / "error_429.txt").read_bytes(), {
                "Retry-After": retry_after, "X-RateLimit-Reset": retry_after,
                "X-RateLimit-Limit": "60000000", "X-RateLimit-Remaining": "0"}
        if not seen.path.startswith(RESOURCE):
            return self._error(404, "DoesNotExistError", f"Page {seen.path} not found")
        doctype = unquote(seen.path[len(RESOURCE):])
        user = self._user(seen.headers.get("authorization"))
        if user is None:
            return self._fixture_error(401, "error_401_authentication.json")
        if doctype != "Bin":
            return self._error(404, "DoesNotExistError", f"DocType {doctype} not found")
        if seen.method != "GET":
            return self._refuse(f"the stand-in lists Bins only (GET), not {seen.method}")
        if user == "Guest" or not self.permitted:
            return self._fixture_error(403, "error_403_permission.json")
        return self._list(seen)

    def _user(self, header: str | None) -> str | None:
        """The user of the request, ``Guest`` without credentials, None for
        credentials that match no user (Frappe's 401 since v15)."""
        if not header:
            return "Guest"
        parts = header.split(" ")
        if len(parts) != 2:
            return None
        kind, token = parts
        if kind.lower() == "basic":
            try:
                token = base64.b64decode(token, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
        elif kind.lower() != "token":
            return None
        pair = token.split(":")
        return self.user if pair == [self.api_key, self.api_secret] else None

    def _list(self, seen):
        raw = parse_qs(seen.target.partition("?")[2], keep_blank_values=True)
        if set(raw) != PARAMS or any(len(v) != 1 for v in raw.values()):
            return self._refuse(f"query parameters {sorted(raw)}, expected {sorted(PARAMS)} once each")
        q = {k: v[0] for k, v in raw.items()}
        try:
            fields, filters = json.loads(q["fields"]), json.loads(q["filters"])
        except json.JSONDecodeError as e:  # Frappe does not catch it: a 500
            return self._error(500, "JSONDecodeError", str(e))
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
            return self._refuse("fields must be a JSON list of field names")
        for f in fields:
            if f not in BIN_FIELDS or f in self.missing_fields:
                return self._fixture_error(417, "error_417_field_not_permitted.json", ("projected_qty", f))
        conditions = self._conditions(filters)
        if isinstance(conditions, str):
            return self._refuse(conditions)
        if q["order_by"] != "name asc":
            return self._refuse(f"order_by {q['order_by']!r}: page by a stable order (name asc)")
        try:
            start, limit = int(q["limit_start"]), int(q["limit_page_length"])
        except ValueError:
            return self._refuse("limit_start and limit_page_length must be integers")
        if start < 0 or limit < 1:
            return self._refuse("limit_start >= 0 and limit_page_length >= 1 (0 would be every Bin)")
        items, warehouses = conditions
        with self._erpnext_lock:
            self.asked.append({"items": items, "warehouses": warehouses, "fields": fields,
                               "start": start, "limit": limit})
        rows = [b for b in self.all_bins() if b["item_code"] in items
                and (warehouses is None or b["warehouse"] in warehouses)]
        return 200, {"data": [{f: b.get(f) for f in fields} for b in rows[start:start + limit]]}

    @staticmethod
    def _conditions(filters):
        """``(items, warehouses or None)`` from the filters, or the reason they are wrong."""
        if not isinstance(filters, list):
            return f"filters must be a list of conditions, not {type(filters).__name__}"
        found: dict[str, list] = {}
        for cond in filters:
            if not (isinstance(cond, list) and len(cond) == 3 and cond[0] in ("item_code", "warehouse")
                    and cond[1] == "in" and isinstance(cond[2], list) and cond[2]
                    and all(isinstance(v, str) for v in cond[2])):
                return f"condition {json.dumps(cond)} is not [item_code|warehouse, 'in', [names]]"
            if cond[0] in found:
                return f"two conditions on {cond[0]}"
            found[cond[0]] = cond[2]
        if "item_code" not in found:
            return "no item_code condition: that would list every Bin of the site"
        return found["item_code"], found.get("warehouse")
