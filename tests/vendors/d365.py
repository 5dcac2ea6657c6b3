"""A loopback stand-in for Dynamics 365 Inventory Visibility and its two token
services, written from Microsoft's documentation (tests/vendors/fixtures/d365/README.md
lists the sources). One server plays the three hosts:

* Microsoft Entra ID, ``POST /{tenant}/oauth2/v2.0/token`` (:attr:`aad_token_url`):
  a form with ``grant_type=client_credentials``, the app's ``client_id`` /
  ``client_secret`` (:attr:`client`) and scope
  ``0cdb527f-a8d1-4bf8-9436-b352c68682b2/.default``; answers the documented
  token body (``expires_in`` a string), 400 ``invalid_scope`` or 401
  ``invalid_client`` with Entra's error body.
* the security service: the general URL ``POST /token``
  (:attr:`security_token_url`) answers 307 to the regional gateway
  ``/securityservice/token``, which takes ``Api-Version: 1.0`` and the
  documented JSON (``client_assertion`` an Entra token it issued, ``context``
  the environment) and answers ``{"access_token", "token_type": "bearer",
  "expires_in": 3600}``; a wrong request is a 400, an unknown assertion a
  401 (empty bodies: undocumented).
* the IV API, ``POST /api/environment/{environment}/onhand/exactquery``:
  ``Authorization: Bearer`` a security-service token (else 401 with an empty
  body, as documented), ``Api-Version: 1.0``, and the documented body, checked
  (organizationId one value, productId a list of at most 5,000 ids,
  dimensions with siteId and locationId, values 1..100 distinct tuples of that
  length, groupByValues a list, returnNegative a boolean), else a 400 with
  ``{"statusCode": 400, "message": ...}``. The answer is a bare array of rows
  built like the documented ones (fixture ``exactquery-response.json``) from
  :attr:`on_hand`, ``{(product, site, location): [row, ...]}``, filled with
  :meth:`put`; several rows of one pair are answered as they are (split by
  ``ColorId``, as in the documented answer). :attr:`key_case` picks the case
  of the row keys (the docs show ``siteid``, ``SiteId`` and ``siteId``).

:meth:`throttle` makes the next IV calls a 429 with ``Retry-After``;
:meth:`revoke` forgets the IV tokens issued (as if they expired early),
``refuse_tokens`` refuses every one; ``echo_assertion`` makes the security
service a careless one that quotes the assertion in its 400. FakeErp's
``mode`` and ``fail_next`` apply to the IV API.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path

import orjson

from tests.erp_server import FakeErp, Seen

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "d365"
TENANT = "11111111-2222-3333-4444-555555555555"
ENVIRONMENT = "9a1b2c3d-4e5f-4a6b-8c7d-0123456789ab"
ORGANIZATION = "usmf"
CLIENT = ("2d3e4f50-6172-4839-9a0b-1c2d3e4f5061", "iv-app-secret-0001")
AAD_SCOPE = "0cdb527f-a8d1-4bf8-9436-b352c68682b2/.default"
IV_SCOPE = "https://inventoryservice.operations365.dynamics.com/.default"
MAX_PRODUCTS, MAX_TUPLES = 5000, 100


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


class BadRequest(Exception):
    """A query IV would refuse: a 400 with the message."""


class InventoryVisibilityServer(FakeErp):
    """The stand-in; see the module docstring."""

    def __init__(self):
        super().__init__()
        self.tenant, self.environment, self.organization = TENANT, ENVIRONMENT, ORGANIZATION
        self.client = CLIENT
        self.aad_lifetime, self.iv_lifetime = "3599", 3600
        self.aad_tokens: set[str] = set()
        self.iv_tokens: set[str] = set()
        self.on_hand: dict[tuple[str, str, str], list[dict]] = {}
        self.key_case = {"productId": "productId", "siteid": "siteid", "locationid": "locationid"}
        self.refuse_tokens = False
        self.echo_assertion = False
        self._throttle: list[str] = []
        self._aad_ids, self._iv_ids = itertools.count(1), itertools.count(1)
        self.respond = _exact_query  # FakeErp.handle answers the IV API through it

    @property
    def aad_token_url(self) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/token"

    @property
    def security_token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def query_path(self) -> str:
        return f"/api/environment/{self.environment}/onhand/exactquery"

    def put(self, product: str, site: str, location: str, available, colour: str | None = None,
            measure: tuple[str, str] = ("iv", "availabletoreserve")) -> None:
        """One more row for the pair: the documented row's quantities with
        ``measure`` (default ``iv.availabletoreserve``) set to ``available``."""
        quantities = copy.deepcopy(fixture("exactquery-response.json")[0]["quantities"])
        quantities.setdefault(measure[0], {})[measure[1]] = available
        row = {"dimensions": {"ColorId": colour} if colour else {}, "quantities": quantities}
        self.on_hand.setdefault((product, site, location), []).append(row)

    def throttle(self, n: int, retry_after: str = "1") -> None:
        """The next ``n`` IV calls answer 429 with ``Retry-After: retry_after``."""
        self._throttle = [retry_after] * n

    def revoke(self) -> None:
        self.iv_tokens.clear()

    def handle(self, seen: Seen):
        if seen.path == f"/{self.tenant}/oauth2/v2.0/token":
            return self._aad(seen)
        if seen.path == "/token":  # the general URL: to the regional gateway, same POST
            if seen.method != "POST":
                return 405, b""
            return 307, b"", {"Location": f"{self.url}/securityservice/token"}
        if seen.path == "/securityservice/token":
            return self._security(seen)
        return super().handle(seen)

    def _aad(self, seen: Seen):
        form = seen.form() if seen.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded") else {}
        if seen.method != "POST" or form.get("grant_type") != "client_credentials":
            body = fixture("aad-error-invalid-scope.json")
            body.update(error="unsupported_grant_type", error_codes=[70003])
            body["error_description"] = "AADSTS70003: The app requested an unsupported grant type."
            return 400, body
        if form.get("scope") != AAD_SCOPE:
            return 400, fixture("aad-error-invalid-scope.json")
        if (form.get("client_id"), form.get("client_secret")) != self.client:
            return 401, fixture("aad-error-invalid-client.json")
        token = f"aad-{next(self._aad_ids)}"
        self.aad_tokens.add(token)
        return 200, {**fixture("aad-token-response.json"), "access_token": token,
                     "expires_in": self.aad_lifetime, "ext_expires_in": self.aad_lifetime}

    def _security(self, seen: Seen):
        if seen.method != "POST" or seen.headers.get("api-version") != "1.0":
            return 400, b""
        try:
            body = seen.json()
        except orjson.JSONDecodeError:
            return 400, b""
        if self.echo_assertion:
            return 400, {"error": "invalid_request",
                         "error_description": f"cannot use assertion {body.get('client_assertion')}"}
        expected = {**fixture("security-token-request.json"), "context": self.environment,
                    "client_assertion": body.get("client_assertion") if isinstance(body, dict) else None}
        if not seen.headers.get("content-type", "").startswith("application/json") or body != expected:
            return 400, b""
        if body["client_assertion"] not in self.aad_tokens:
            return 401, b""
        token = f"iv-{next(self._iv_ids)}"
        self.iv_tokens.add(token)
        return 200, {**fixture("security-token-response.json"), "access_token": token,
                     "expires_in": self.iv_lifetime}


def _exact_query(iv: InventoryVisibilityServer, seen: Seen):
    if seen.path != iv.query_path:
        return 404, b""
    if seen.method != "POST":
        return 405, b""
    auth = seen.headers.get("authorization", "")
    if iv.refuse_tokens or not (auth[:7].lower() == "bearer " and auth[7:] in iv.iv_tokens):
        return 401, b""
    if iv._throttle:
        return 429, b"", {"Retry-After": iv._throttle.pop()}
    try:
        if seen.headers.get("api-version") != "1.0":
            raise BadRequest("The Api-Version header is required: 1.0.")
        if not seen.headers.get("content-type", "").startswith("application/json"):
            raise BadRequest("Content-Type must be application/json.")
        return 200, _rows(iv, seen.json())
    except BadRequest as e:
        return 400, {"statusCode": 400, "message": str(e)}
    except orjson.JSONDecodeError:
        return 400, {"statusCode": 400, "message": "The request body is not JSON."}


def _strings(value, name: str, at_most: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"filters.{name} must be an array of strings.")
    if len(value) > at_most:
        raise BadRequest(f"filters.{name} holds {len(value)} values; at most {at_most}.")
    return value


def _rows(iv: InventoryVisibilityServer, body) -> list[dict]:
    filters = body.get("filters") if isinstance(body, dict) else None
    if not isinstance(filters, dict):
        raise BadRequest("filters is required.")
    if _strings(filters.get("organizationId"), "organizationId", 1) != [iv.organization]:
        raise BadRequest(f"organizationId must be [\"{iv.organization}\"].")
    products = _strings(filters.get("productId", []), "productId", MAX_PRODUCTS)
    dimensions = [d.lower() for d in _strings(filters.get("dimensions"), "dimensions", 10)]
    if "siteid" not in dimensions or "locationid" not in dimensions:
        raise BadRequest("filters.dimensions must contain siteId and locationId.")
    values = filters.get("values")
    if not isinstance(values, list) or not values:
        raise BadRequest("filters.values must hold one or more tuples.")
    if len(values) > MAX_TUPLES:
        raise BadRequest(f"filters.values holds {len(values)} tuples; at most {MAX_TUPLES}.")
    if not all(isinstance(t, list) and len(t) == len(dimensions) and all(isinstance(v, str) for v in t)
               for t in values):
        raise BadRequest(f"Every tuple of filters.values must hold {len(dimensions)} strings, "
                         f"one per dimension.")
    if len({tuple(t) for t in values}) != len(values):
        raise BadRequest("The tuples of filters.values must be distinct.")
    if not isinstance(body.get("groupByValues", []), list):
        raise BadRequest("groupByValues must be an array.")
    negative = body.get("returnNegative", False)
    if not isinstance(negative, bool):
        raise BadRequest("returnNegative must be a boolean.")
    site_at, location_at = dimensions.index("siteid"), dimensions.index("locationid")
    asked = products or sorted({p for p, _, _ in iv.on_hand})  # [] = every product
    case = iv.key_case
    out = []
    for product in asked:
        for t in values:
            site, location = t[site_at], t[location_at]
            for row in iv.on_hand.get((product, site, location), []):
                if not negative and any(isinstance(q, (int, float)) and q < 0
                                        for measures in row["quantities"].values() for q in measures.values()):
                    continue
                out.append({case["productId"]: product,
                            "dimensions": {**row["dimensions"], case["siteid"]: site, case["locationid"]: location},
                            "quantities": row["quantities"]})
    return out
