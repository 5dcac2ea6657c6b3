"""``type: shopify``: ATP from Shopify inventory over the Admin GraphQL API.

One call per chunk of the batch (at most ``MAX_SKUS`` SKUs x ``MAX_LOCATIONS``
locations, the engine's per-call caps, run concurrently by ``max_concurrency``):
``POST {url}/admin/api/{api_version}/graphql.json`` with header
``X-Shopify-Access-Token`` and ``{"query", "variables"}``. The query finds the
inventory items by SKU (``inventoryItems(first:, after:, query: $q)``, ``$q``
being ``sku:"..." OR sku:"..."``, each SKU a double-quoted search value with
``\\`` and ``"`` backslash-escaped, passed as a GraphQL variable so it is never
GraphQL syntax) and, per item, the level at each location of the chunk
(``l0: inventoryLevel(locationId: "gid://shopify/Location/N")``, one alias per
location) with ``quantities(names: [quantity])``. Asking the chunk's locations
by alias keeps the requested cost small and fixed (2 + 25 x (1 + 3 x 10) = 777
of the 1000 a single query may cost) and needs no paging inside an item;
``pageInfo`` cursors page the items (``after: $after``).

Shopify's ``sku:`` search is a text search (it may find ``ABC-1`` for ``ABC``):
an item answers only for its own exact ``sku``; the others are ignored.
Locations are ``gid://shopify/Location/N``; a location the batch holds in any
other form is not asked (unknown). In ``location_map`` a plain number ``N``
means ``gid://shopify/Location/N``.

A 200 with ``errors`` fails the call with Shopify's messages; ``THROTTLED``
(``errors[].extensions.code``) is retried like a 503 within ``retries`` and the
deadline first (``extract.retry_on``). The SKU -> inventory item id lookups are
not cached: every call searches by SKU.

Shopify pages followed: GraphQL Admin API reference ``inventoryItems`` query,
``InventoryItem.inventoryLevel``, ``InventoryLevel.quantities`` (quantity
names), ``InventoryItemConnection`` / ``PageInfo``; "Shopify API search syntax";
"Shopify API rate limits" (calculated query cost, single query limit 1000,
``THROTTLED``); "About the GraphQL Admin API" (endpoint, authentication with
``X-Shopify-Access-Token``); "Shopify API versioning".
"""
from __future__ import annotations

from marshmallow import fields, validate

from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.idmaps import IdMaps
from atp_bridge.adapters.rest_wire import safe_url

__all__ = ["Shopify", "DEFAULT_API_VERSION", "QUANTITIES", "GID", "MAX_SKUS", "MAX_LOCATIONS", "QUERY"]

DEFAULT_API_VERSION = "2025-10"
GID = "gid://shopify/Location/"
MAX_SKUS = 25       # items per page: with 10 locations the requested cost is 777 (limit 1000)
MAX_LOCATIONS = 10
# InventoryLevel.quantities names (the "Inventory states" of "Manage inventory quantities and states")
QUANTITIES = ("available", "on_hand", "committed", "incoming", "reserved", "damaged", "safety_stock",
              "quality_control")

_ASKED = "locations | unique(true) | list"  # the gid check is in the loop: Jinja has no regex test
QUERY = (
    "query AtpBridgeInventory($q: String!, $after: String) {"
    " inventoryItems(first: " + str(MAX_SKUS) + ", after: $after, query: $q) {"
    " nodes { sku"
    "{% for l in " + _ASKED + " if l.startswith('" + GID + "') and l[" + str(len(GID)) + ":].isdigit()"
    " and l[" + str(len(GID)) + ":].isascii() %}"
    " l{{ loop.index0 }}: inventoryLevel(locationId: {{ l | tojson }})"
    " { location { id } quantities(names: [{{ vars.quantity | tojson }}]) { name quantity } }"
    "{% endfor %} }"
    " pageInfo { hasNextPage endCursor } } }")
SEARCH = ("{% for p in products | unique(true) %}{% if not loop.first %} OR {% endif %}"
          "sku:{{ p | dq }}{% endfor %}")
# a 200 with errors is no answer (GraphQL); THROTTLED is retried first
ERRORS = "errors[].message || errors"
THROTTLED = "errors[?extensions.code == 'THROTTLED']"


def _gid(value: str) -> str:
    return GID + value if isinstance(value, str) and value.isascii() and value.isdigit() else value


class Shopify(Connector):
    """ATP from Shopify inventory levels; see the module docstring and the README."""

    connector_fields = {
        "url": fields.String(required=True, validate=validate.Regexp(
            r"^https?://[^/?#\s]+/?$", error="Must be the shop's URL like https://my-shop.myshopify.com "
                                             "(no path: /admin/api/... is added).")),
        "access_token": fields.String(required=True, validate=validate.Length(min=1, error="Must not be empty.")),
        "api_version": fields.String(load_default=DEFAULT_API_VERSION, validate=validate.Regexp(
            r"^(\d{4}-(01|04|07|10)|unstable)$",
            error=f"Must be a Shopify API version like {DEFAULT_API_VERSION} (YYYY-01, -04, -07 or -10).")),
        "quantity": fields.String(load_default="available", validate=validate.OneOf(
            QUANTITIES, error=f"Must be one of: {', '.join(QUANTITIES)}.")),
    }

    @classmethod
    def preset(cls, own: dict) -> dict:
        quantity = own["quantity"]
        return {
            "url": f"{own['url'].rstrip('/')}/admin/api/{own['api_version']}",
            "per": "batch",
            "batch_size": MAX_SKUS * MAX_LOCATIONS,
            "max_products": MAX_SKUS, "max_locations": MAX_LOCATIONS,
            "path": "/graphql.json",
            "vars": {"quantity": quantity},
            "body": {"query": QUERY, "variables": {"q": SEARCH, "after": "{{ page.cursor }}"}},
            "paginate": {"type": "cursor", "cursor": "data.inventoryItems.pageInfo.endCursor",
                         "has_next": "data.inventoryItems.pageInfo.hasNextPage"},
            "extract": {"rows": ["data.inventoryItems.nodes[?sku]", "values(@)[?location]"],
                        "product": "_parent.sku", "location": "location.id",
                        "atp": f"quantities[?name == '{quantity}'].quantity | [0]",
                        "errors": ERRORS, "retry_on": THROTTLED},
            "auth": {"type": "bearer", "token": own["access_token"], "header": "X-Shopify-Access-Token",
                     "prefix": ""},
        }

    # location_map: a plain number N is the location gid://shopify/Location/N
    @property
    def id_maps(self):
        return self._id_maps

    @id_maps.setter
    def id_maps(self, maps) -> None:
        if maps is not None and maps.locations:
            maps = IdMaps(maps.products, {k: _gid(v) for k, v in maps.locations.items()})
        self._id_maps = maps

    def __repr__(self) -> str:
        return f"Shopify({self.name!r}, {safe_url(self.url)})"

