"""A loopback stand-in for NetSuite's REST web services, from NetSuite's documentation.

Two endpoints, on a :class:`tests.erp_server.FakeErp` (its faults and logs apply):

* ``POST /services/rest/auth/oauth2/v1/token``: OAuth 2.0 client credentials
  (M2M). The form must be exactly the documented three fields; the JWT
  assertion must carry a known ``kid`` and a documented ``alg``, verify against
  the public key uploaded for that ``kid``, and hold ``iss`` (the client id),
  ``aud`` (this endpoint's URL), ``scope`` with ``rest_webservices``, ``iat``
  and an ``exp`` at most an hour later. Answers a fresh opaque token with
  ``expires_in: "3600"``, or ``{"error": ...}`` (each refusal's reason is kept
  in ``refusals``).
* ``POST /services/rest/query/v1/suiteql?limit=&offset=``: needs ``Bearer`` and
  a token it issued (else the documented 401 ``INVALID_LOGIN`` body),
  ``Prefer: transient``, a JSON body that is exactly ``{"q": ...}``, ``limit``
  1..1000 and an ``offset`` that is a multiple of it. ``q`` must be
  ``query_template`` with its ``{products}`` / ``{locations}`` replaced by
  well-formed SQL string literal lists (``'it''s'``) of at most 1000 ids;
  anything else (an id that broke out of its literal) is the documented 400
  ``INVALID_PARAMETER``. The
  rows are ``stock`` ({(itemid, location id): quantity}) for the listed ids,
  ordered by item then location, every value a string, paged like NetSuite;
  a list of quantities is one row each (a query by bin), None a NULL column
  (NetSuite leaves it out of the row).

``throttle(n, retry_after)`` makes the next ``n`` SuiteQL calls a 429 with
``Retry-After``; ``revoke_tokens()`` forgets the issued tokens (a 401 follows);
``refuse_tokens = True`` refuses even the new ones.
Fixtures and the page each comes from: ``fixtures/netsuite/README.md``.
"""
from __future__ import annotations

import base64
import itertools
import re
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from atp_bridge.adapters.engine.connectors.netsuite import DEFAULT_QUERY, MAX_LIST, SUITEQL_PATH, TOKEN_PATH
from tests.erp_server import FakeErp

FIXTURES = Path(__file__).parent / "fixtures" / "netsuite"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512")  # "The Request Token Structure"
MAX_LIMIT = 1000
_LITERAL = r"'(?:[^']|'')*'"
_LIST = rf"{_LITERAL}(?:\s*,\s*{_LITERAL})*"


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


def write_key(path: Path, kind: str = "rsa") -> Path:
    """A new private key in PEM (``rsa``: 2048-bit RSA; ``ec``: P-256, ``ec384``,
    ``ec521``), made at test time: no key is ever committed."""
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        curve = {"ec": ec.SECP256R1(), "ec384": ec.SECP384R1(), "ec521": ec.SECP521R1()}[kind]
        key = ec.generate_private_key(curve)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def public_key(pem_path: Path):
    return serialization.load_pem_private_key(pem_path.read_bytes(), password=None).public_key()


def sql_literals(text: str) -> list[str]:
    """``'a', 'it''s'`` -> ``["a", "it's"]`` (the text matched ``_LIST``)."""
    return [m[1:-1].replace("''", "'") for m in re.findall(_LITERAL, text)]


def query_pattern(template: str) -> re.Pattern:
    """``template`` with each ``{products}`` / ``{locations}`` as a literal-list group."""
    out, pos, n = [], 0, itertools.count()
    for m in re.finditer(r"\{(products|locations)\}", template):
        out += [re.escape(template[pos:m.start()]), f"(?P<{m[1]}_{next(n)}>{_LIST})"]
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out), re.S)


class NetSuite(FakeErp):
    """The stand-in; see the module docstring. ``certificates``: {kid: public key}."""

    def __init__(self, client_id: str = "ns-client-0001", certificates: dict | None = None):
        super().__init__()
        self.respond = NetSuite._respond
        self.client_id = client_id
        self.certificates = dict(certificates or {})
        self.query_template = DEFAULT_QUERY
        self.tokens: set[str] = set()
        self.refuse_tokens = False  # True: every token it issued is refused (401) anyway
        self.refusals: list[str] = []
        self.asked: list[dict] = []   # per SuiteQL call: products, locations, limit, offset
        self.assertions: list[dict] = []  # header and claims of every accepted assertion
        self._throttle: list[str] = []
        self._ids = itertools.count(1)
        self._ns_lock = threading.Lock()

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def throttle(self, n: int, retry_after: str = "1") -> None:
        self._throttle = [retry_after] * n

    def revoke_tokens(self) -> None:
        super().revoke_tokens()
        self.tokens.clear()

    def suiteql_calls(self):
        return self.requests(SUITEQL_PATH)

    # -- the endpoints ---------------------------------------------------------

    def _respond(self, seen):
        if seen.path == TOKEN_PATH and seen.method == "POST":
            return self._token_endpoint(seen)
        if seen.path == SUITEQL_PATH and seen.method == "POST":
            return self._suiteql(seen)
        return 404, _error(404, "Not Found", "NONEXISTENT_ID", f"No resource at {seen.path}.")

    def _refuse(self, status: int, error: str, reason: str):
        self.refusals.append(reason)
        return status, {"error": error}

    def _token_endpoint(self, seen):
        if seen.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self._refuse(400, "invalid_request", "not a form post")
        form = parse_qs(seen.body.decode(), keep_blank_values=True)
        if sorted(form) != ["client_assertion", "client_assertion_type", "grant_type"] or any(
                len(v) != 1 for v in form.values()):
            return self._refuse(400, "invalid_request", f"form fields {sorted(form)}")
        form = {k: v[0] for k, v in form.items()}
        if form["grant_type"] != "client_credentials":
            return self._refuse(400, "unsupported_grant_type", "grant_type")
        if form["client_assertion_type"] != JWT_BEARER:
            return self._refuse(400, "invalid_request", "client_assertion_type")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return self._refuse(400, "invalid_request", "client_assertion is not a JWT")
        if header.get("typ") != "JWT" or header.get("alg") not in ALGORITHMS:
            return self._refuse(400, "invalid_grant", f"header typ/alg {header}")
        key = self.certificates.get(header.get("kid"))
        if key is None:
            return self._refuse(400, "invalid_grant", f"unknown kid {header.get('kid')!r}")
        try:
            claims = jwt.decode(assertion, key, algorithms=[header["alg"]], audience=self.token_url,
                                options={"require": ["iss", "aud", "iat", "exp", "scope"]})
        except Exception as e:  # noqa: BLE001 (a bad signature, or a key of another type)
            return self._refuse(400, "invalid_grant", f"assertion: {type(e).__name__}: {e}")
        if claims["iss"] != self.client_id:
            return self._refuse(401, "invalid_client", "iss is not the client id")
        scope = claims["scope"]
        scopes = [s.strip() for s in scope.split(",")] if isinstance(scope, str) else scope
        if not isinstance(scopes, list) or "rest_webservices" not in scopes:
            return self._refuse(400, "invalid_scope", f"scope {scope!r}")
        if not 0 < claims["exp"] - claims["iat"] <= 3600 or claims["iat"] > time.time() + 60:
            return self._refuse(400, "invalid_grant", "iat/exp")
        with self._ns_lock:
            self.assertions.append({"header": header, "claims": claims})
            token = _opaque_token(next(self._ids))
            self.tokens.add(token)
        answer = fixture("token_response.json")
        answer["access_token"] = token
        return 200, answer

    def _suiteql(self, seen):
        auth = seen.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens or self.refuse_tokens:
            return 401, fixture("error_401_invalid_login.json")
        with self._ns_lock:
            retry_after = self._throttle.pop() if self._throttle else None
        if retry_after is not None:
            return 429, fixture("error_429.json"), {"Retry-After": retry_after}
        if seen.headers.get("prefer") != "transient":
            return 400, _error(400, "Bad Request", "INVALID_HEADER",
                               "The Prefer: transient header is required to run a SuiteQL query.")
        if seen.headers.get("content-type", "").split(";")[0] != "application/json":
            return 415, _error(415, "Unsupported Media Type", "INVALID_CONTENT_TYPE",
                               "Content-Type must be application/json.")
        raw = parse_qs(seen.target.partition("?")[2], keep_blank_values=True)
        if set(raw) - {"limit", "offset"} or any(len(v) != 1 for v in raw.values()):
            return 400, _error(400, "Bad Request", "INVALID_PARAMETER", f"Query parameters {sorted(raw)}.")
        try:
            limit, offset = int(raw.get("limit", ["1000"])[0]), int(raw.get("offset", ["0"])[0])
        except ValueError:
            return 400, _error(400, "Bad Request", "INVALID_PARAMETER", "limit and offset must be integers.")
        if not 1 <= limit <= MAX_LIMIT or offset < 0 or offset % limit:
            return 400, _error(400, "Bad Request", "INVALID_PARAMETER",
                               f"limit must be 1 to {MAX_LIMIT} and offset a multiple of it.")
        try:
            body = seen.json()
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or set(body) != {"q"} or not isinstance(body["q"], str):
            return 400, _error(400, "Bad Request", "INVALID_CONTENT", "The body must be {\"q\": <query>}.")
        match = query_pattern(self.query_template).fullmatch(body["q"])
        if match is None:
            return 400, _invalid_query("the query is not the one this account runs")
        lists = {"products": set(), "locations": set()}
        for group, text in match.groupdict().items():
            literals = sql_literals(text)
            if len(literals) > MAX_LIST:  # Oracle's ORA-01795, as SuiteQL reports it
                return 400, _invalid_query("maximum number of expressions in a list is 1000")
            lists[group.rsplit("_", 1)[0]].update(literals)
        with self._ns_lock:
            self.asked.append({"products": sorted(lists["products"]), "locations": sorted(lists["locations"]),
                               "limit": limit, "offset": offset})
        rows = [{"links": [], "product": p, "location": loc, **({} if q is None else {"atp": str(q)})}
                for (p, loc), qty in sorted(self.stock.items())
                if p in lists["products"] and (loc in lists["locations"] or "{locations}" not in
                                               self.query_template)
                for q in (qty if isinstance(qty, list) else [qty])]
        return 200, self._page(rows, limit, offset)

    def _page(self, rows: list, limit: int, offset: int) -> dict:
        page = fixture("suiteql_response.json")
        items, total = rows[offset:offset + limit], len(rows)
        href = f"{self.url}{SUITEQL_PATH}?limit={limit}&offset="
        last = max(0, (total - 1) // limit * limit)
        links = ([{"rel": "next", "href": f"{href}{offset + limit}"}] if offset + limit < total else [])
        links += [{"rel": "last", "href": f"{href}{last}"}, {"rel": "self", "href": f"{href}{offset}"}]
        page.update(links=links, count=len(items), hasMore=offset + limit < total, items=items,
                    offset=offset, totalResults=total)
        return page


def _error(status: int, title: str, code: str, detail: str) -> dict:
    body = fixture("error_400_invalid_query.json")
    body.update(title=title, status=status, **{"o:errorDetails": [{"detail": detail, "o:errorCode": code}]})
    return body


def _invalid_query(reason: str) -> dict:
    body = fixture("error_400_invalid_query.json")
    detail = body["o:errorDetails"][0]["detail"]
    body["o:errorDetails"][0]["detail"] = detail.split("Search error occurred:")[0] + \
        f"Search error occurred: {reason}."
    return body


def _opaque_token(n: int) -> str:
    """A token shaped like NetSuite's (a JWT) but meaningless: clients must not read it."""
    part = base64.urlsafe_b64encode(orjson.dumps({"n": n, "sub": "stand-in"})).rstrip(b"=").decode()
    return f"eyJraWQiOiJzLlNZU1RFTS4yMDIwXzEiLCJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{part}.c2lnbmF0dXJl"
