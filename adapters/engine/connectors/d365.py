"""Dynamics 365 Inventory Visibility: on-hand by exact query, a preset on the engine.

``type: d365-inventory-visibility`` asks the Inventory Visibility service
(``url``, the environment's own endpoint such as
``https://inventoryservice.wus-il301.gateway.prod.island.powerapps.com``) with
one call per chunk of the batch: ``POST
/api/environment/{environment_id}/onhand/exactquery`` (header ``Api-Version:
1.0``) with ``filters.organizationId`` (the legal entity), ``productId`` (the
products), ``dimensions: ["siteId", "locationId"]`` and ``values``, one
``[site, location]`` per location. A location is ``site/location`` (the
base Adapter's ``location_map`` maps NewStore's ids to it); one that is not
(no ``/``) is left out of the query: Inventory Visibility cannot know it, so
its pairs are unknown. ``groupByValues: []`` and ``returnNegative: true``: the
answer is grouped by the site and location asked, and an oversold pair is
known (at a negative quantity, which the bridge clamps to 0) rather than
missing.

The answer is a bare array of rows: ``productId``, ``dimensions.siteid`` /
``dimensions.locationid`` (the keys' case varies between answers:
``extract.ignore_case``) and ``quantities.<data source>.<measure>``;
``quantity`` picks the measure (``iv.availabletoreserve``). The rows of one
pair are summed.

The token is two steps (``auth.exchange``): a Microsoft Entra ID
client-credentials token for the Inventory Visibility app
(``aad_token_url``, scope ``0cdb527f-a8d1-4bf8-9436-b352c68682b2/.default``),
traded at the security service (``security_token_url``, which answers 307
to its regional gateway) for the bearer token the service takes.

Sources: Microsoft Learn "Inventory Visibility public APIs" (authentication,
exact query) and Microsoft's Inventory Visibility examples repository
(tests/vendors/fixtures/d365/README.md lists them).
"""
from __future__ import annotations

import re
from urllib.parse import quote

from marshmallow import fields, validate

from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.rest_options import _http_url

__all__ = ["InventoryVisibility"]

API_VERSION = "1.0"
AAD_TOKEN_URL = "https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"
AAD_SCOPE = "0cdb527f-a8d1-4bf8-9436-b352c68682b2/.default"  # the Inventory Visibility app
SECURITY_TOKEN_URL = "https://securityservice.operations365.dynamics.com/token"
IV_SCOPE = "https://inventoryservice.operations365.dynamics.com/.default"

_NAME = validate.Length(min=1, error="Must not be empty.")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _url(**kw) -> fields.String:
    return fields.String(validate=_http_url, **kw)


def _quantity_path(quantity: str) -> str:
    """``iv.AvailableToReserve`` -> the extract path on lower-cased keys; a part
    that is no plain name (``@iv``, ``total ordered``) is a quoted identifier."""
    parts = quantity.strip().lower().split(".", 1)
    return "quantities." + ".".join(p if _IDENT.match(p) else '"' + p.replace('"', '\\"') + '"'
                                    for p in parts)


class InventoryVisibility(Connector):
    """``type: d365-inventory-visibility``: the exact on-hand query of Dynamics
    365 Inventory Visibility, one call per chunk, ``quantity`` summed per pair."""

    connector_fields = {
        "url": _url(required=True),
        "environment_id": fields.String(required=True, validate=validate.Regexp(
            r"^[A-Za-z0-9-]+$", error="Must be the Lifecycle Services environment ID (a GUID).")),
        "organization_id": fields.String(required=True, validate=_NAME),
        "tenant_id": fields.String(required=True, validate=validate.Regexp(
            r"^[A-Za-z0-9.-]+$", error="Must be the Microsoft Entra tenant ID (a GUID) or its "
                                       "domain name (contoso.onmicrosoft.com).")),
        "client_id": fields.String(required=True, validate=_NAME),
        "client_secret": fields.String(required=True, validate=_NAME),
        "aad_token_url": _url(load_default=None),
        "security_token_url": _url(load_default=SECURITY_TOKEN_URL),
        "quantity": fields.String(load_default="iv.availabletoreserve", validate=validate.Regexp(
            r"^\s*[^.\s][^.]*\.[^.]*[^.\s]\s*$", error="Must be <data source>.<measure>, like "
                                                      "iv.availabletoreserve or fno.availphysical.")),
    }

    def __init__(self, name: str, **kw):
        super().__init__(name, **kw)
        # On the session rather than in ``headers``: the user's headers replace a
        # preset's, and every static header value is redacted from messages as a secret.
        self.session.headers.setdefault("Api-Version", API_VERSION)

    @classmethod
    def preset(cls, own: dict) -> dict:
        token_url = own["aad_token_url"] or AAD_TOKEN_URL.format(tenant_id=quote(own["tenant_id"], safe=""))
        return {
            "url": own["url"], "method": "POST", "per": "batch",
            "vars": {"environment_id": own["environment_id"], "organization_id": own["organization_id"]},
            "path": "/api/environment/{{ vars.environment_id }}/onhand/exactquery",
            "body": {
                "filters": {
                    "organizationId": ["{{ vars.organization_id }}"],
                    "productId": "{{ products | unique(case_sensitive=true) | list }}",
                    "dimensions": ["siteId", "locationId"],
                    # "site/location" -> [site, location]; an id without "/" is left out
                    "values": "{{ locations | unique(case_sensitive=true) | map('split', '/', 1)"
                              " | selectattr('1', 'defined') | list }}",
                },
                "groupByValues": [],
                "returnNegative": True,
            },
            "extract": {
                "ignore_case": True,
                "product": "productid",
                "location": "join('/', [to_string(dimensions.siteid), to_string(dimensions.locationid)])",
                "atp": _quantity_path(own["quantity"]),
                "combine": "sum",
            },
            "auth": {
                "type": "oauth2_client_credentials", "token_url": token_url,
                "client_id": own["client_id"], "client_secret": own["client_secret"], "scope": AAD_SCOPE,
                "exchange": {
                    "url": own["security_token_url"],
                    "headers": {"Api-Version": API_VERSION},
                    "body": {
                        "grant_type": "client_credentials",
                        "client_assertion_type": "aad_app",
                        "client_assertion": "{{ token }}",
                        "scope": IV_SCOPE,
                        "context": own["environment_id"],
                        "context_type": "finops-env",
                    },
                },
            },
        }
