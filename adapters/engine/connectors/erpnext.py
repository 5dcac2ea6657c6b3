"""``type: erpnext``: stock per item and warehouse from ERPNext's ``Bin`` doctype.

One call per chunk of the batch (``batch_size`` pairs, cut along the
products): ``GET {url}/api/resource/Bin`` of Frappe's REST API with

* ``filters``: ``[["item_code", "in", [...]], ["warehouse", "in", [...]]]``,
  Frappe's list of conditions, rendered by Jinja's ``tojson``: every id is a
  JSON string, so quotes, brackets or commas in an id cannot change the
  structure. A request for more than :data:`WAREHOUSE_FILTER_MAX` warehouses
  filters on the items only (one item per call then, since ``batch_size`` is
  smaller) and keeps the Bins asked for: hundreds of warehouse names would
  pass the 4094-byte request line that Frappe's gunicorn accepts.
* ``fields``: the two ids and the quantities that ``quantity`` needs;
* ``order_by=name asc``: Bins change their ``modified`` (the default order)
  with every stock move, so paging by it could skip or repeat a Bin between
  pages; the name never changes;
* ``limit_start`` / ``limit_page_length``: pages of :data:`PAGE` rows until a
  short page.

``Authorization: token <api_key>:<api_secret>``. The answer is
``{"data": [{"item_code", "warehouse", "actual_qty", "reserved_qty"}, ...]}``;
the ATP is ``actual_qty - reserved_qty`` (``quantity: actual_minus_reserved``,
the default), or ``projected_qty``, or ``actual_qty``, in the item's stock
UOM. Bins of one pair are added up (normally there is one per item and
warehouse); a pair without a Bin is unknown. Warehouses are ERPNext's
names (``Stores - AC``): map NewStore's locations with ``location_map``.

Sources: the Frappe Framework REST API pages ("Listing Documents", "Filters,
Fields & Pagination", "Token Based Authentication") and ERPNext's
``erpnext/stock/doctype/bin/bin.json`` (tests/vendors/fixtures/erpnext/README.md).
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields, validate

from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.rest_options import _http_url
from atp_bridge.adapters.rest_wire import safe_url

__all__ = ["ERPNext", "BIN_PATH", "PAGE", "QUANTITIES", "WAREHOUSE_FILTER_MAX"]

BIN_PATH = "/api/resource/Bin"
PAGE = 500                 # limit_page_length; a call asks for at most batch_size Bins
BATCH_SIZE = 50            # pairs per call: ~1.5 KB of request line with 10-character ids
WAREHOUSE_FILTER_MAX = 50  # more warehouses than this: filter on the items only
# quantity -> (the field that is the ATP, the field subtracted from it)
QUANTITIES = {
    "actual_minus_reserved": ("actual_qty", "reserved_qty"),
    "projected_qty": ("projected_qty", None),
    "actual_qty": ("actual_qty", None),
}

_FILTERS = (
    "{% if locations | length <= vars.warehouse_filter_max %}"
    '{{ [["item_code", "in", products], ["warehouse", "in", locations]] | tojson }}'
    '{% else %}{{ [["item_code", "in", products]] | tojson }}{% endif %}'
)


def _site_url(value: str) -> None:
    _http_url(value)
    parts = urlsplit(value)
    if parts.query or parts.fragment or "api" in parts.path.split("/"):
        raise ValidationError("Must be the site's base URL like https://erp.example.com "
                              "(no /api/... path, query or fragment).")


def _credential(what: str):
    def check(value: str) -> None:
        if not value:
            raise ValidationError("Must not be empty.")
        if ":" in value or any(c.isspace() for c in value):
            raise ValidationError(f"Must be the user's {what} as ERPNext shows it: no ':' or blanks "
                                  f"(the header is 'token <api_key>:<api_secret>').")
    return check


class ERPNext(Connector):
    """ATP from ERPNext's Bins; see the module docstring and the README."""

    connector_fields = {
        "url": fields.String(required=True, validate=_site_url),
        "api_key": fields.String(required=True, validate=_credential("API Key")),
        "api_secret": fields.String(required=True, validate=_credential("API Secret")),
        "quantity": fields.String(load_default="actual_minus_reserved", validate=validate.OneOf(
            list(QUANTITIES), error="Must be one of: {choices} (actual_minus_reserved: "
                                    "actual_qty - reserved_qty).")),
    }

    def __init__(self, name: str, *, auth=None, **kw):
        super().__init__(name, auth=auth, **kw)
        if auth is not None and auth.value.startswith("token "):
            # each half on its own too, should ERPNext ever quote one of them
            self.redact.add(*auth.value[len("token "):].split(":", 1))

    @classmethod
    def preset(cls, own: dict) -> dict:
        atp, minus = QUANTITIES[own["quantity"]]
        extract = {
            "rows": "data", "product": "item_code", "location": "warehouse", "atp": atp,
            "combine": "sum",
            # a 200 without the list is a wrong url (a web page, another API), not "no stock"
            "errors": "type(data) != 'array' && 'no data list in the answer (is url the "
                      "ERPNext site, like https://erp.example.com?)' || null",
        }
        if minus:
            extract["minus"] = minus
        return {
            "url": own["url"].rstrip("/"),
            "method": "GET",
            "per": "batch",
            "batch_size": BATCH_SIZE,
            "path": BIN_PATH,
            "params": {
                "fields": json.dumps(["item_code", "warehouse", atp] + ([minus] if minus else [])),
                "filters": _FILTERS,
                "order_by": "name asc",
            },
            "vars": {"warehouse_filter_max": WAREHOUSE_FILTER_MAX},
            "paginate": {"type": "offset", "offset_param": "limit_start",
                         "limit_param": "limit_page_length", "limit": PAGE},
            "extract": extract,
            "auth": {"type": "header", "name": "Authorization",
                     "value": f"token {own['api_key']}:{own['api_secret']}"},
        }

    def __repr__(self) -> str:
        return f"ERPNext({self.name!r}, {safe_url(self.url)})"
