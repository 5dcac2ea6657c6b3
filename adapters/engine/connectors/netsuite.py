"""``type: netsuite``: ATP from Oracle NetSuite through SuiteQL over REST web services.

One call per batch (cut by ``batch_size`` along the products):
``POST {url}/services/rest/query/v1/suiteql?limit=1000&offset=N`` with
``Prefer: transient`` and ``{"q": <query>}``, paged while the answer says
``hasMore`` (NetSuite's largest page is 1000 rows). ``query`` is a SuiteQL
template whose ``{products}`` and ``{locations}`` become comma-separated SQL
string literals (``'it''s'``): the ids are data, never SQL. Its columns are
``product``, ``location`` and ``atp`` (SuiteQL answers them as strings); rows
of one pair are added up (a query by bin or lot), a pair without a row is unknown.

The token comes from OAuth 2.0 client credentials (machine to machine): a JWT
assertion signed with ``private_key`` (PS256 for an RSA key, ES256/384/512 for
EC), ``kid`` = ``certificate_id``, ``iss`` = ``client_id``, ``aud`` = the
token URL, ``scope`` (the engine's ``client_auth: private_key_jwt``).

NetSuite Help Center pages followed: "OAuth 2.0 Client Credentials (M2M)
Setup", "The Request Token Structure", "POST Request to the Token Endpoint and
the Access Token Response", "Executing SuiteQL Queries Through REST Web
Services", "Collection Paging", "Error Handling in REST Web Services".
"""
from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate

from atp_bridge.adapters.engine.connector import Connector
from atp_bridge.adapters.rest_wire import safe_url

__all__ = ["NetSuite", "DEFAULT_QUERY", "DEFAULT_SCOPE", "SUITEQL_PATH", "TOKEN_PATH", "MAX_LIST"]

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
PAGE_LIMIT = 1000       # NetSuite's largest SuiteQL page
MAX_LIST = 1000         # ids in one SQL IN list (Oracle's limit, ORA-01795)
DEFAULT_SCOPE = "rest_webservices"  # what SuiteQL over REST needs
DEFAULT_QUERY = (
    "SELECT item.itemid AS product, iil.location AS location, NVL(iil.quantityavailable, 0) AS atp "
    "FROM inventoryitemlocations iil JOIN item ON item.id = iil.item "
    "WHERE item.itemid IN ({products}) AND iil.location IN ({locations}) "
    "ORDER BY item.itemid, iil.location")

_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_LISTS = ("products", "locations")
# The query as the engine's body template: the user's text is data (``vars.query``,
# a list of (kind, text) parts), never Jinja; each list becomes quoted SQL literals.
_QUERY_TEMPLATE = ("{% for kind, text in vars.query %}"
                   "{% if kind == 'products' %}{{ products | map('sql') | join(', ') }}"
                   "{% elif kind == 'locations' %}{{ locations | map('sql') | join(', ') }}"
                   "{% else %}{{ text }}{% endif %}{% endfor %}")


def query_parts(query: str) -> list[list[str]]:
    """``query`` cut at its placeholders: ``[["text", ...], ["products", ""], ...]``.
    Raises ValidationError for an unknown placeholder or a query without ``{products}``."""
    parts, pos = [], 0
    for m in _PLACEHOLDER.finditer(query):
        if m[1] not in _LISTS:
            raise ValidationError(f"Unknown placeholder {{{m[1]}}}: the query may use {{products}} "
                                  f"and {{locations}} (comma-separated SQL string literals).")
        parts += [["text", query[pos:m.start()]], [m[1], ""]]
        pos = m.end()
    parts.append(["text", query[pos:]])
    if not any(kind == "products" for kind, _ in parts):
        raise ValidationError("Must use {products} (e.g. WHERE item.itemid IN ({products})): "
                              "without it the query reads every item.")
    return [p for p in parts if p != ["text", ""]]


def _query(value: str) -> None:
    query_parts(value)


def default_url(account_id: str) -> str:
    """The account's REST host: ``1234567_SB1`` -> ``https://1234567-sb1.suitetalk.api.netsuite.com``."""
    return f"https://{account_id.lower().replace('_', '-')}.suitetalk.api.netsuite.com"


_NAME = validate.Length(min=1, error="Must not be empty.")


class NetSuite(Connector):
    """ATP from NetSuite's SuiteQL; see the module docstring and the README."""

    connector_fields = {
        "account_id": fields.String(required=True, validate=validate.Regexp(
            r"^[A-Za-z0-9]+(_[A-Za-z0-9]+)?$", error="Must be a NetSuite account id like 1234567 "
                                                     "or 1234567_SB1.")),
        # "" (a ${NETSUITE_URL:-} left unset) is the account's own host too
        "url": fields.String(load_default=None, validate=validate.Regexp(
            r"^$|^https?://[^/?#\s]+/?$", error="Must be the account's base URL like "
                                               "https://1234567.suitetalk.api.netsuite.com (no path).")),
        "client_id": fields.String(required=True, validate=_NAME),
        "certificate_id": fields.String(required=True, validate=_NAME),
        "private_key": fields.String(required=True, validate=_NAME),
        "scope": fields.String(load_default=DEFAULT_SCOPE, validate=_NAME),
        "query": fields.String(load_default=DEFAULT_QUERY, validate=_query),
    }

    def __init__(self, name: str, *, headers: dict | None = None, **kw):
        # required on every SuiteQL call; merged here so a user's own headers keep it
        super().__init__(name, headers={**(headers or {}), "Prefer": "transient"}, **kw)

    @classmethod
    def preset(cls, own: dict) -> dict:
        url = (own["url"] or default_url(own["account_id"])).rstrip("/")
        return {
            "url": url,
            "per": "batch",
            "path": SUITEQL_PATH,
            "vars": {"query": query_parts(own["query"])},
            "body": {"q": _QUERY_TEMPLATE},
            "paginate": {"type": "offset", "limit": PAGE_LIMIT, "limit_param": "limit",
                         "offset_param": "offset", "has_more": "hasMore"},
            "extract": {"rows": "items", "product": "product", "location": "location",
                        "atp": "atp", "combine": "sum"},
            "auth": {"type": "oauth2_client_credentials", "token_url": url + TOKEN_PATH,
                     "client_id": own["client_id"], "client_auth": "private_key_jwt",
                     "private_key": own["private_key"], "key_id": own["certificate_id"],
                     "scope": own["scope"]},
        }

    @classmethod
    def check(cls, spec) -> list[tuple[str, str]]:
        # the key file is the user's private_key, not the preset's auth block
        found = [("private_key" if key == "auth.private_key" else key, msg) for key, msg in super().check(spec)]
        if spec.options.get("batch_size", 0) > MAX_LIST:  # a call's products are one IN list
            found.append(("batch_size", f"At most {MAX_LIST} for NetSuite: one SuiteQL IN list holds "
                                        f"at most {MAX_LIST} ids."))
        return found

    def __repr__(self) -> str:
        return f"NetSuite({self.name!r}, {safe_url(self.url)})"
