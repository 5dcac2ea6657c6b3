"""``type: commercetools``: ATP from commercetools Composable Commerce inventory entries.

One call per batch (cut by ``batch_size`` along the products, 150 pairs by
default): ``GET {url}/{project_key}/inventory`` ("Query InventoryEntries")
with the Query Predicate
``sku in :skus and supplyChannel(id in :channels)`` and its input variables
``var.skus`` / ``var.channels``, one repeated query parameter per id, so an id
is data and never predicate syntax (no quoting to get wrong). ``limit=500``
(commercetools' largest page) and ``offset`` page on ``total``; ``sort=id asc``
keeps the pages stable. Each entry answers for (``sku``, ``supplyChannel.id``)
with ``availableQuantity`` (or ``quantityOnStock``, ``quantity:``).

An entry without a supply channel (a project's channel-less stock) answers for
``no_channel_location`` when that is set, and is asked for only when that
location is in the batch (``... or supplyChannel is not defined``); without it
such entries are ignored. Locations arrive as the source's ids (the base
Adapter applied ``location_map``, NewStore location -> supply channel id):
``no_channel_location`` is compared after the map.

The repeated ``var.*`` parameters are rendered in the engine's ``path``
template (its ``{{ }}`` values are percent-encoded whole, which is exactly a
query value's encoding): the engine's ``params`` send one value per name.

The token: OAuth 2.0 client credentials at ``{auth_url}/oauth/token``, client
id and secret by HTTP Basic, ``scope`` (default ``view_products:{project_key}``),
cached until shortly before ``expires_in`` and fetched again once on a 401.

commercetools pages followed: "Query InventoryEntries" (HTTP API, Inventory),
"Query Predicates" and the Query Predicate Spec (input variables), "Paging"
(limit at most 500, offset at most 10000), "Authorization" (client credentials
flow), "Errors" (``{"statusCode", "message", "errors": [{"code", "message"}]}``).
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields, validate

from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.rest_wire import safe_url

__all__ = ["Commercetools", "QUANTITIES", "TOKEN_PATH", "PAGE_LIMIT"]

TOKEN_PATH = "/oauth/token"
PAGE_LIMIT = 500        # the largest limit commercetools accepts
MAX_PAGES = 20          # offset stops at 10000 = 20 pages of 500
BATCH_SIZE = 150        # pairs per call: a few KB of URL. commercetools' load balancer refuses
                        # URLs with hundreds of ids (commercetools/nodejs#1379 chunks at 150)
QUANTITIES = ("availableQuantity", "quantityOnStock")

# the batch's supply channels: its locations but the channel-less one
_CHANNELS = "locations | reject('equalto', vars.no_channel) | unique(true)"
PATH = ("/{{ vars.project_key }}/inventory?"
        "{% for p in products | unique(true) %}{% if not loop.first %}&{% endif %}var.skus={{ p }}{% endfor %}"
        "{% for c in " + _CHANNELS + " %}&var.channels={{ c }}{% endfor %}")
WHERE = ("{% set channels = " + _CHANNELS + " | list %}"
         "{% set bare = vars.no_channel in locations %}"
         "sku in :skus and "
         "{% if channels and bare %}(supplyChannel(id in :channels) or supplyChannel is not defined)"
         "{% elif channels %}supplyChannel(id in :channels)"
         "{% else %}supplyChannel is not defined{% endif %}")

_NAME = validate.Length(min=1, error="Must not be empty.")


def _host_url(example: str, what: str):
    def check(value: str) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(f"Must be an https:// URL like {example}.")
        if parts.path.rstrip("/") or parts.query or parts.fragment:
            raise ValidationError(f"Must be the host only, like {example} ({what}).")
    return check


def jmespath_literal(value: str) -> str:
    """``value`` as a JMESPath JSON literal: backticks around JSON text that
    holds no backtick (``\\u0060`` instead), so no value can end it early."""
    return "`" + json.dumps(value).replace("`", "\\u0060") + "`"


class Commercetools(Connector):
    """ATP from commercetools inventory entries; see the module docstring and the README."""

    connector_fields = {
        "url": fields.String(required=True, validate=_host_url(
            "https://api.europe-west1.gcp.commercetools.com", "the project key is its own key")),
        "auth_url": fields.String(required=True, validate=_host_url(
            "https://auth.europe-west1.gcp.commercetools.com", "/oauth/token is added")),
        # part of the default scope view_products:<project_key>, whose parts are space-separated
        "project_key": fields.String(required=True, validate=validate.Regexp(
            r"^\S+$", error="Must not be empty or hold spaces (it is the project's key, like my-shop-42).")),
        "client_id": fields.String(required=True, validate=_NAME),
        "client_secret": fields.String(required=True, validate=_NAME),
        "scope": fields.String(load_default=None, validate=_NAME),
        "quantity": fields.String(load_default="availableQuantity", validate=validate.OneOf(
            QUANTITIES, error="Must be availableQuantity (on stock minus reserved) or quantityOnStock.")),
        "no_channel_location": fields.String(load_default=None, validate=_NAME),
    }

    @classmethod
    def preset(cls, own: dict) -> dict:
        project, bare = own["project_key"], own["no_channel_location"]
        if bare is None:  # an entry without a channel is nobody's stock: not a row
            rows, location = "results[?supplyChannel]", "supplyChannel.id"
        else:
            rows, location = "results", "supplyChannel.id || " + jmespath_literal(bare)
        return {
            "url": own["url"].rstrip("/"),
            "method": "GET",
            "per": "batch",
            "batch_size": BATCH_SIZE,
            "vars": {"project_key": project, "no_channel": bare},
            "path": PATH,
            "params": {"where": WHERE, "sort": "id asc"},
            "paginate": {"type": "offset", "limit": PAGE_LIMIT, "limit_param": "limit",
                         "offset_param": "offset", "total": "total", "max_pages": MAX_PAGES},
            "extract": {"rows": rows, "product": "sku", "location": location, "atp": own["quantity"]},
            "auth": {"type": "oauth2_client_credentials", "token_url": own["auth_url"].rstrip("/") + TOKEN_PATH,
                     "client_id": own["client_id"], "client_secret": own["client_secret"],
                     "client_auth": "basic", "scope": own["scope"] or f"view_products:{project}"},
        }

    @classmethod
    def check(cls, spec) -> list[tuple[str, str]]:
        """The REST checks, and a ``no_channel_location`` that ``location_map``
        would change before the connector sees it (it would then match nothing)."""
        found = super().check(spec)
        wire = spec.options.get("wire")
        bare = wire.template.vars.get("no_channel") if wire is not None else None
        mapped = spec.id_maps.locations if spec.id_maps else {}
        if bare is not None and mapped.get(bare, bare) != bare:
            found.append(("no_channel_location", "is a key of location_map too, so the batch holds the id it "
                                                 "maps to: give that id here, or take it out of location_map"))
        return found

    def __repr__(self) -> str:
        return f"Commercetools({self.name!r}, {safe_url(self.url)})"
