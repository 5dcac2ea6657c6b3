"""A loopback stand-in for Salesforce Omnichannel Inventory, from Salesforce's documentation.

Two endpoints, on a :class:`tests.erp_server.FakeErp` (its faults and logs apply):

* ``POST /services/oauth2/token``: the OAuth 2.0 client credentials flow. A
  form with ``grant_type=client_credentials`` and the client's ``client_id`` /
  ``client_secret`` (or those in HTTP Basic and ``grant_type`` alone), nothing
  else. Answers a fresh token in Salesforce's shape (no ``expires_in``), or a
  400 ``{"error", "error_description"}``; each refusal's reason is kept in
  ``refusals``.
* ``POST /services/data/vNN.0/commerce/oci/availability/availability-records/actions/get-availability``:
  the version must be 51.0 to ``latest_version`` (else 404 ``NOT_FOUND``); needs
  ``Bearer`` and a token it issued (else the 401 ``INVALID_SESSION_ID`` body), a
  JSON body (``Content-Type: application/json``) with only the documented
  fields and their documented combinations: ``stockKeepingUnits`` with
  ``locationIdentifiers`` or ``locationGroupIdentifiers`` (never both), each a
  list of 1 to 100 non-empty strings, or the single ``stockKeepingUnit`` with
  ``locationGroupIdentifier``; ``useCache`` / ``includeRelatedProducts``
  booleans. Anything else is a 400 with Salesforce's error list
  (``[{"errorCode", "message"}]``). The answer is ``locations[]`` (or
  ``locationGroups[]``) with the ``inventoryRecords[]`` of ``stock``:
  ``{(sku, identifier): quantity or {field: quantity}}``; a number is every
  quantity, a dict sets ``availableToFulfill`` / ``availableToOrder`` /
  ``onHand`` / ``reserved`` one by one. An identifier without stock is left out
  of the answer, and so is a SKU without stock at it. Every body is kept in
  ``asked``.

``throttle(n, status, retry_after)`` makes the next ``n`` availability calls a
429 (``REQUEST_LIMIT_EXCEEDED``) or 503, with ``Retry-After`` if given;
``revoke_tokens()`` forgets the issued tokens (a 401 follows);
``refuse_tokens = True`` refuses even the new ones; ``report_errors`` (a list of
``{"errorCode", "message"}``) makes the answers a 200 with ``success: false``;
``quantities_as_strings`` sends every quantity as a JSON string.
Fixtures and the page each comes from: ``fixtures/salesforce/README.md``.
"""
from __future__ import annotations

import base64
import itertools
import re
import secrets
import threading
from pathlib import Path
from urllib.parse import parse_qs

import orjson

from atp_bridge.adapters.engine.connectors.salesforce import AVAILABILITY_PATH, TOKEN_PATH
from tests.erp_server import FakeErp

FIXTURES = Path(__file__).parent / "fixtures" / "salesforce"
MAX_IDS = 100
FIELDS = {"stockKeepingUnit", "stockKeepingUnits", "locationIdentifiers", "locationGroupIdentifier",
          "locationGroupIdentifiers", "useCache", "includeRelatedProducts"}
QUANTITY_FIELDS = ("availableToFulfill", "availableToOrder", "onHand", "reserved", "safetyStockCount")
_VERSIONED = re.compile(r"^/services/data/v(?P<major>\d+)\.0(?P<rest>/.*)$")


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


def error(name: str, message: str | None = None) -> list:
    """A fixture error list, its message replaced by ``message`` if given."""
    body = fixture(name)
    if message is not None:
        body[0]["message"] = message
    return body


class OmnichannelInventory(FakeErp):
    """The stand-in; see the module docstring."""

    def __init__(self, client_id: str = "3MVG9.stand-in.consumer-key",
                 client_secret: str = "stand-in-consumer-secret-0123456789", latest_version: int = 66):
        super().__init__()
        self.respond = OmnichannelInventory._respond
        self.client = (client_id, client_secret)
        self.latest_version = latest_version
        self.tokens: set[str] = set()
        self.refuse_tokens = False
        self.refusals: list[str] = []
        self.asked: list[dict] = []          # the body of every accepted availability call
        self.report_errors: list[dict] | None = None
        self.quantities_as_strings = False
        self._throttle: list[tuple[int, str | None]] = []
        self._ids = itertools.count(1)
        self._sf_lock = threading.Lock()

    def throttle(self, n: int, status: int = 429, retry_after: str | None = None) -> None:
        self._throttle = [(status, retry_after)] * n

    def revoke_tokens(self) -> None:
        super().revoke_tokens()
        self.tokens.clear()

    def availability_calls(self):
        """Logged availability calls (any API version)."""
        return [s for s in list(self.log) if s.path.endswith(AVAILABILITY_PATH)]

    def token_calls(self):
        return self.requests(TOKEN_PATH)

    # -- the endpoints ---------------------------------------------------------

    def _respond(self, seen):
        if seen.path == TOKEN_PATH:
            return self._token_endpoint(seen) if seen.method == "POST" else (
                405, error("error_404_not_found.json", "HTTP Method 'GET' not allowed. Allowed are POST"))
        m = _VERSIONED.match(seen.path)
        if m is None or m["rest"] != AVAILABILITY_PATH or not 51 <= int(m["major"]) <= self.latest_version:
            return 404, fixture("error_404_not_found.json")
        if seen.method != "POST":
            return 405, error("error_404_not_found.json", f"HTTP Method '{seen.method}' not allowed. "
                                                          f"Allowed are POST")
        return self._availability(seen)

    def _refuse(self, body: dict, reason: str):
        self.refusals.append(reason)
        return 400, body

    def _token_endpoint(self, seen):
        if seen.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self._refuse(fixture("token_error_unsupported_grant_type.json"), "not a form post")
        form = parse_qs(seen.body.decode(), keep_blank_values=True)
        if any(len(v) != 1 for v in form.values()):
            return self._refuse(fixture("token_error_invalid_client.json"), "a form field given twice")
        form = {k: v[0] for k, v in form.items()}
        if form.get("grant_type") != "client_credentials":
            return self._refuse(fixture("token_error_unsupported_grant_type.json"),
                                f"grant_type {form.get('grant_type')!r}")
        basic = seen.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client = tuple(base64.b64decode(basic[6:]).decode().split(":", 1))
            extra = set(form) - {"grant_type"}
        else:
            client = (form.get("client_id"), form.get("client_secret"))
            extra = set(form) - {"grant_type", "client_id", "client_secret"}
        if extra:
            return self._refuse(fixture("token_error_invalid_client.json"), f"unexpected fields {sorted(extra)}")
        if client != self.client:
            return self._refuse(fixture("token_error_invalid_client.json"), "wrong client id or secret")
        with self._sf_lock:
            token = f"00Dxx0000000001!AQ{next(self._ids):04d}.{secrets.token_urlsafe(24)}"
            self.tokens.add(token)
        answer = fixture("token_response.json")
        answer.update(access_token=token, instance_url=self.url)
        return 200, answer

    def _availability(self, seen):
        auth = seen.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens or self.refuse_tokens:
            return 401, fixture("error_401_invalid_session.json")
        with self._sf_lock:
            throttled = self._throttle.pop() if self._throttle else None
        if throttled is not None:
            status, retry_after = throttled
            body = fixture("error_429_request_limit.json" if status == 429 else "error_503_rate_limit.json")
            return status, body, ({"Retry-After": retry_after} if retry_after else {})
        if seen.headers.get("content-type", "").split(";")[0] != "application/json":
            return 415, error("error_400_json_parser.json", "Unsupported Media Type: send application/json")
        try:
            body = seen.json()
        except orjson.JSONDecodeError:
            return 400, error("error_400_json_parser.json", "The request body is not JSON")
        problem = input_problem(body)
        if problem:
            code, message = problem
            return 400, error("error_400_json_parser.json" if code == "JSON_PARSER_ERROR"
                              else "error_400_invalid_input.json", message)
        with self._sf_lock:
            self.asked.append(body)
        return 200, self._answer(body)

    def _answer(self, body: dict) -> dict:
        skus = body.get("stockKeepingUnits") or [body["stockKeepingUnit"]]
        groups = "locationGroupIdentifiers" in body or "locationGroupIdentifier" in body
        idents = body.get("locationGroupIdentifiers") or body.get("locationIdentifiers") or \
            [body["locationGroupIdentifier"]]
        entries = []
        for ident in dict.fromkeys(idents):
            records = [self._record(sku, self.stock[(sku, ident)]) for sku in dict.fromkeys(skus)
                       if (sku, ident) in self.stock]
            if any(loc == ident for _, loc in self.stock):
                entries.append({"locationGroupIdentifier" if groups else "locationIdentifier": ident,
                                "inventoryRecords": records})
        answer = fixture("get_availability_response.json")
        answer.update(locationGroups=entries if groups else [], locations=[] if groups else entries)
        if self.report_errors is not None:
            answer.update(success=False, errors=self.report_errors)
        return answer

    def _record(self, sku: str, stock) -> dict:
        record = dict(fixture("get_availability_response.json")["locations"][0]["inventoryRecords"][0])
        values = stock if isinstance(stock, dict) else {k: stock for k in QUANTITY_FIELDS[:3]}
        record.update({k: 0.0 for k in QUANTITY_FIELDS}, futures=[], stockKeepingUnit=sku)
        for k, v in values.items():
            record[k] = str(v) if self.quantities_as_strings else float(v)
        return record


def input_problem(body) -> tuple[str, str] | None:
    """``(errorCode, message)`` for a body the resource does not take, per "OCI
    Get Inventory Availability Input"; None for a good one."""
    if not isinstance(body, dict):
        return "JSON_PARSER_ERROR", "The request body must be a JSON object"
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return "JSON_PARSER_ERROR", f'Unrecognized field "{unknown[0]}"'
    for key in ("useCache", "includeRelatedProducts"):
        if key in body and not isinstance(body[key], bool):
            return "JSON_PARSER_ERROR", f"{key} must be a Boolean"
    if ("stockKeepingUnit" in body) == ("stockKeepingUnits" in body):
        return "INVALID_API_INPUT", "Specify one of stockKeepingUnit or stockKeepingUnits"
    criteria = [k for k in ("locationGroupIdentifier", "locationGroupIdentifiers", "locationIdentifiers")
                if k in body]
    if len(criteria) != 1:
        return "INVALID_API_INPUT", ("Specify one of locationGroupIdentifier, locationGroupIdentifiers "
                                     f"or locationIdentifiers (got {', '.join(criteria) or 'none'})")
    partner = "stockKeepingUnit" if criteria[0] == "locationGroupIdentifier" else "stockKeepingUnits"
    if partner not in body:
        return "INVALID_API_INPUT", f"{criteria[0]} combines with {partner} only"
    for key in dict.fromkeys(("stockKeepingUnit", "stockKeepingUnits", criteria[0])):
        if key not in body:
            continue
        value = body[key]
        if key.endswith("s"):  # the list forms
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_IDS:
                return "INVALID_API_INPUT", f"{key}: a list of 1 to {MAX_IDS} values is required"
            items = value
        else:
            items = [value]
        if not all(isinstance(v, str) and v for v in items):
            return "INVALID_API_INPUT", f"{key}: every value must be a non-empty string"
    return None
