"""SAP S/4HANA: ATP from the availability check, or stock from the material stock API.

Two presets on the REST engine (:mod:`atp_bridge.adapters.engine.connector`),
both OData V2 services read with GET and ``Accept: application/json``:

* ``type: sap-availability``: ``API_PRODUCT_AVAILY_INFO_BASIC``, function
  import ``DetermineAvailabilityAt``, one call per pair (the function checks
  one material at one plant): ``SupplyingPlant``, ``Material`` and
  ``ATPCheckingRule`` as OData string literals, ``RequestedUTCDateTime`` as a
  ``datetimeoffset'...'`` literal of the call's time. Its return type is the
  complex type ``AvailabilityRecord``, which SAP Gateway wraps in the
  function's name: ``d.DetermineAvailabilityAt.AvailableQuantityInBaseUnit``
  (a decimal string) is the ATP.
* ``type: sap-material-stock``: ``API_MATERIAL_STOCK_SRV``, entity set
  ``A_MatlStkInAcctMod``: one ``$filter`` per call for a grid of materials x
  locations and the configured stock types, paged by the server's
  ``d.__next`` links. A location is a plant (``1710``: every storage
  location of it) or ``plant/storage_location`` (``1710/171A``). Each row
  counts for both ``Plant`` and ``Plant/StorageLocation``; the rows of a pair
  are summed, and a row counted for a location nobody asked for is dropped
  (so ``1710`` and ``1710/171A`` can share one call).

Sources: the services' EDMX and SAP Business Accelerator Hub's OpenAPI export
(tests/vendors/fixtures/sap/README.md lists them).
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields, validate

from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.rest_options import _http_url

__all__ = ["SapAvailability", "SapMaterialStock"]


def _service_root(value: str) -> None:
    _http_url(value)
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ValidationError("Must be the service root without a query or fragment, like "
                              "https://host/sap/opu/odata/sap/API_MATERIAL_STOCK_SRV (send sap-client "
                              "as a header: headers: {sap-client: '100'}).")


def _url() -> fields.String:
    return fields.String(required=True, validate=_service_root)


def _auth() -> fields.Raw:
    # passed through as written: the REST schema loads it (and names auth.<key> in messages)
    return fields.Raw(load_default=None, allow_none=True)


_CODE = validate.Regexp(r"^[A-Za-z0-9]{1,2}$", error="Must be an SAP code of 1 or 2 letters or digits.")


class SapAvailability(Connector):
    """``type: sap-availability``: ``DetermineAvailabilityAt`` of
    ``API_PRODUCT_AVAILY_INFO_BASIC``, one call per product and plant."""

    connector_fields = {
        "url": _url(),
        "auth": _auth(),
        "atp_checking_rule": fields.String(load_default="A", validate=_CODE),
    }

    @classmethod
    def preset(cls, own: dict) -> dict:
        return {
            "url": own["url"], "auth": own["auth"], "method": "GET", "per": "pair",
            "path": "/DetermineAvailabilityAt",
            "params": {
                "SupplyingPlant": "{{ location | odata }}",
                "Material": "{{ product | odata }}",
                "ATPCheckingRule": "{{ vars.rule | odata }}",
                "RequestedUTCDateTime": "datetimeoffset'{{ now.strftime('%Y-%m-%dT%H:%M:%SZ') }}'",
            },
            "vars": {"rule": own["atp_checking_rule"]},
            "extract": {
                "rows": "d.DetermineAvailabilityAt",
                "atp": "AvailableQuantityInBaseUnit",
                # a 200 without the quantity is a wrong URL or a changed API, not "unknown"
                "errors": "type(d.DetermineAvailabilityAt.AvailableQuantityInBaseUnit) == 'null' && "
                          "'no d.DetermineAvailabilityAt.AvailableQuantityInBaseUnit (is url the "
                          "API_PRODUCT_AVAILY_INFO_BASIC service root?)' || null",
            },
        }


# Material in (...) and the locations (plant, or plant and storage location) and the stock types
_STOCK_FILTER = (
    "({% for p in products %}{% if not loop.first %} or {% endif %}Material eq {{ p | odata }}{% endfor %})"
    " and ({% for loc in locations %}{% if not loop.first %} or {% endif %}"
    "{% set plant, slash, sloc = loc.partition('/') %}"
    "{% if slash %}(Plant eq {{ plant | odata }} and StorageLocation eq {{ sloc | odata }})"
    "{% else %}Plant eq {{ plant | odata }}{% endif %}{% endfor %})"
    " and ({% for t in vars.stock_types %}{% if not loop.first %} or {% endif %}"
    "InventoryStockType eq {{ t | odata }}{% endfor %})"
)
_STOCK_SELECT = "Material,Plant,StorageLocation,InventoryStockType,MatlWrhsStkQtyInMatlBaseUnit"


class SapMaterialStock(Connector):
    """``type: sap-material-stock``: ``A_MatlStkInAcctMod`` of
    ``API_MATERIAL_STOCK_SRV``, summed per material and location over the
    rows of ``stock_types``."""

    connector_fields = {
        "url": _url(),
        "auth": _auth(),
        "stock_types": fields.List(fields.String(validate=_CODE), load_default=lambda: ["01"],
                                   validate=validate.Length(min=1, error="Give at least one stock type.")),
    }

    @classmethod
    def preset(cls, own: dict) -> dict:
        types = list(dict.fromkeys(own["stock_types"]))
        # each row twice: for its plant and for its plant/storage location
        as_rows = ("{product: Material, location: Plant, qty: MatlWrhsStkQtyInMatlBaseUnit}, "
                   "{product: Material, location: join('/', [Plant, StorageLocation]), "
                   "qty: MatlWrhsStkQtyInMatlBaseUnit}")
        return {
            "url": own["url"], "auth": own["auth"], "method": "GET", "per": "batch",
            # a call's URL grows with its ids: 50 pairs keep it near 2-3 KB
            "batch_size": 50,
            "path": "/A_MatlStkInAcctMod",
            "params": {"$filter": _STOCK_FILTER, "$select": _STOCK_SELECT, "$format": "json"},
            "vars": {"stock_types": types},
            "paginate": {"type": "next_link", "next": "d.__next"},
            "extract": {
                # the server filters on the stock types already; the rows are checked again
                "rows": f"d.results[?contains(`{json.dumps(types)}`, InventoryStockType)].[{as_rows}][]",
                "product": "product", "location": "location", "atp": "qty", "combine": "sum",
                "errors": "type(d.results) != 'array' && 'no d.results list (is url the "
                          "API_MATERIAL_STOCK_SRV service root?)' || null",
            },
        }
