"""``type: salesforce-oci``: ATP from Salesforce Omnichannel Inventory (Connect REST API).

One call per chunk of the batch:
``POST {url}/services/data/v{api_version}/commerce/oci/availability/availability-records/actions/get-availability``
with ``{"stockKeepingUnits": [...], "locationIdentifiers": [...], "useCache": true}``
(``locationGroupIdentifiers`` with ``location_groups: true``). The resource takes
at most 100 SKUs and 100 locations (or groups) per call, so a larger batch is cut
along both (the engine's per-call caps) and the chunks run concurrently
(``max_concurrency``). The answer nests ``locations[].inventoryRecords[]``: the
location is the parent's ``locationIdentifier``, the product the record's
``stockKeepingUnit``, the ATP the record's ``quantity`` field
(``availableToFulfill``, ``availableToOrder`` or ``onHand``). A SKU or location
the answer leaves out is unknown. A 2xx whose ``success`` is false is an error
carrying its ``errors[].message``.

The token comes from the OAuth 2.0 client credentials flow of an external client
(or connected) app at ``{url}/services/oauth2/token`` (``client_id`` /
``client_secret`` in the form); Salesforce's answer has no ``expires_in``, so the
engine reuses the token for its default lifetime and fetches a new one on a 401.

Salesforce pages followed: Connect REST API Developer Guide "Availability
Records, Get Availability", "OCI Get Inventory Availability Input", the OCI
output representations (Get Inventory Availability, Location (Group)
Availability, Inventory Record), "Status Codes and Error Responses", "Connect
REST API Limits"; Salesforce Help "OAuth 2.0 Client Credentials Flow for
Server-to-Server Integration" and "OAuth 2.0 Authorization Errors".
"""
from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate

from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.rest_wire import safe_url

__all__ = ["OmnichannelInventory", "AVAILABILITY_PATH", "TOKEN_PATH", "DEFAULT_API_VERSION",
           "MAX_IDS", "QUANTITIES"]

TOKEN_PATH = "/services/oauth2/token"
AVAILABILITY_PATH = "/commerce/oci/availability/availability-records/actions/get-availability"
DEFAULT_API_VERSION = "66.0"  # Spring '26; the resource exists since 51.0
FIRST_API_VERSION = 51
MAX_IDS = 100                 # "A list of up to 100" SKUs, locations, location groups
QUANTITIES = ("availableToFulfill", "availableToOrder", "onHand")
# A 2xx that says success: false is no answer: its errors[].message (or codes) fail the call.
ERRORS = ("success == `false` && (errors[].message || errors[].errorCode || "
          "`[\"the answer says success: false\"]`) || `null`")


class _ApiVersion(fields.Field):
    """``66.0``, ``"66.0"`` or ``66`` -> ``"66.0"``; 51.0 or later."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError("Must be a Salesforce API version like 66.0.")
        text = value if isinstance(value, str) else (f"{value:.1f}" if isinstance(value, float) else f"{value}.0")
        m = re.fullmatch(r"(\d{2,3})(?:\.0)?", text.strip())
        if m is None:
            raise ValidationError(f"Must be a Salesforce API version like {DEFAULT_API_VERSION} "
                                  f"(without the v), not {value!r}.")
        if int(m[1]) < FIRST_API_VERSION:
            raise ValidationError(f"Must be {FIRST_API_VERSION}.0 or later: Omnichannel Inventory's "
                                  f"Get Availability resource exists since API version {FIRST_API_VERSION}.0.")
        return f"{int(m[1])}.0"


_NAME = validate.Length(min=1, error="Must not be empty.")


class OmnichannelInventory(Connector):
    """ATP from Salesforce Omnichannel Inventory; see the module docstring and the README."""

    connector_fields = {
        "url": fields.String(required=True, validate=validate.Regexp(
            r"^https?://[^/?#\s]+/?$", error="Must be your org's My Domain URL like "
                                             "https://mycompany.my.salesforce.com (no path).")),
        "api_version": _ApiVersion(load_default=DEFAULT_API_VERSION),
        "client_id": fields.String(required=True, validate=_NAME),
        "client_secret": fields.String(required=True, validate=_NAME),
        "quantity": fields.String(load_default="availableToFulfill", validate=validate.OneOf(
            QUANTITIES, error=f"Must be one of: {', '.join(QUANTITIES)}.")),
        "use_cache": fields.Boolean(load_default=True),
        "location_groups": fields.Boolean(load_default=False),
    }

    @classmethod
    def preset(cls, own: dict) -> dict:
        url = own["url"].rstrip("/")
        kind = "locationGroup" if own["location_groups"] else "location"
        return {
            "url": f"{url}/services/data/v{own['api_version']}",
            "per": "batch",
            # the caps decide the grid of a call (100 x 100); batch_size may make it smaller
            "batch_size": MAX_IDS * MAX_IDS,
            "max_products": MAX_IDS, "max_locations": MAX_IDS,
            "path": AVAILABILITY_PATH,
            # two NewStore ids mapped to one Salesforce id are asked once (case matters)
            "body": {"stockKeepingUnits": "{{ products | unique(true) | list }}",
                     f"{kind}Identifiers": "{{ locations | unique(true) | list }}",
                     "useCache": own["use_cache"]},
            "extract": {"rows": [f"{kind}s", "inventoryRecords"], "product": "stockKeepingUnit",
                        "location": f"_parent.{kind}Identifier", "atp": own["quantity"],
                        "errors": ERRORS},
            "auth": {"type": "oauth2_client_credentials", "token_url": url + TOKEN_PATH,
                     "client_id": own["client_id"], "client_secret": own["client_secret"]},
        }

    def __repr__(self) -> str:
        return f"OmnichannelInventory({self.name!r}, {safe_url(self.url)})"
