"""A loopback stand-in for commercetools' auth and HTTP API, from commercetools' documentation.

Two endpoints on a :class:`tests.erp_server.FakeErp` (its faults and logs apply):

* ``POST /oauth/token``: the client credentials flow. A form post with
  ``grant_type=client_credentials`` and an optional space-separated ``scope``,
  the client id and secret by HTTP Basic only (a secret in the form is refused);
  each scope asked for must be one the API client has. Answers a fresh token
  with ``expires_in``, or the documented auth error body (``invalid_client``,
  ``invalid_scope``...); each refusal's reason is kept in ``refusals``.
* ``GET /{project_key}/inventory``: needs ``Bearer`` and a token it issued
  (else the documented 401 ``invalid_token`` body) whose scopes hold
  ``view_products:{project_key}`` or ``manage_products:{project_key}`` (else 403
  ``insufficient_scope``). Query parameters: ``where`` (a Query Predicate,
  parsed by the spec's grammar: string literals with their escapes, input
  variables ``:name`` from repeated ``var.name`` parameters, ``and`` / ``or`` /
  ``not``, ``in``, ``is [not] defined``, comparisons, embedded ``field(...)``;
  a field InventoryEntry does not have is an error), ``limit`` (0..500),
  ``offset`` (0..10000), ``sort``, ``withTotal``, ``expand``; anything else, an
  empty query field or a malformed predicate is a 400 ``InvalidInput`` body
  ("Malformed parameter: where: ..."). Answers the matching entries of
  ``entries`` (``add(sku, channel, available)``) as a paged query response
  (``limit``, ``offset``, ``count``, ``total``, ``results``).

``throttle(n, retry_after)`` makes the next ``n`` inventory calls a 429 with
``Retry-After``; ``revoke_tokens()`` forgets the issued tokens (a 401 follows);
``refuse_tokens = True`` refuses even new ones. ``asked`` keeps each inventory
call's decoded ``where``, variables, ``limit``, ``offset`` and ``sort``.
Fixtures and the page each comes from: ``fixtures/commercetools/README.md``.
"""
from __future__ import annotations

import base64
import copy
import itertools
import re
import threading
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from tests.erp_server import FakeErp

FIXTURES = Path(__file__).parent / "fixtures" / "commercetools"
TOKEN_PATH = "/oauth/token"
MAX_LIMIT, MAX_OFFSET = 500, 10_000  # "Paging": limit <= 500, offset <= 10000
INVENTORY_FIELDS = {"id", "version", "key", "sku", "supplyChannel", "quantityOnStock", "availableQuantity",
                    "createdAt", "lastModifiedAt", "minCartQuantity", "maxCartQuantity", "restockableInDays",
                    "expectedDelivery", "custom"}
REFERENCE_FIELDS = {"id", "typeId"}  # a ChannelReference
PARAMS = {"where", "limit", "offset", "sort", "withTotal", "expand"}
_VAR = re.compile(r"^var\.([a-zA-Z0-9]+)$")


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


def error(status: int, code: str, message: str, **extra) -> dict:
    """The documented ErrorResponse: ``statusCode``, ``message``, ``errors[{code, message}]``."""
    return {"statusCode": status, "message": message, "errors": [{"code": code, "message": message}], **extra}


def auth_error(status: int, code: str, message: str) -> dict:
    """An AuthErrorResponse: the ErrorResponse plus OAuth 2.0's ``error`` / ``error_description``."""
    return error(status, code, message, error=code, error_description=message)


# -- Query Predicates (https://docs.commercetools.com/query-specs/query-predicate-spec.html) --------

class PredicateError(ValueError):
    pass


_TOKEN = re.compile(r"""
    (?P<ws>[\t\n\r\f ]+)
  | (?P<string>")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![-_A-Za-z0-9]))
  | (?P<var>:[-_A-Za-z0-9]+)
  | (?P<ident>[-_A-Za-z0-9]+)
  | (?P<op>!=|<>|>=|<=|=|>|<|\(|\)|,)
""", re.X)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_KEYWORDS = {"and", "or", "not", "in", "is", "defined", "empty", "true", "false", "contains", "all", "any"}


def _string(text: str, i: int) -> tuple[str, int]:
    """The string literal whose opening quote is at ``i``: its value and the index after it."""
    out, i = [], i + 1
    while True:
        if i >= len(text):
            raise PredicateError(f"Invalid input 'EOI', expected '\"' (line 1, column {i + 1})")
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            nxt = text[i + 1:i + 2]
            if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2:i + 6]):
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            if nxt not in _ESCAPES:
                raise PredicateError(f"Invalid input '{nxt}', expected escaped character (line 1, column {i + 2})")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        if ord(c) < 0x20 and c not in "\t\n\r":  # outside SourceCharacter
            raise PredicateError(f"Invalid input '\\u{ord(c):04x}' (line 1, column {i + 1})")
        out.append(c)
        i += 1


def tokens(text: str) -> list[tuple[str, object, int]]:
    found, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            raise PredicateError(f"Invalid input '{text[i]}' (line 1, column {i + 1})")
        kind = m.lastgroup
        if kind == "string":
            value, end = _string(text, i)
            found.append(("string", value, i))
            i = end
            continue
        if kind == "ident" and m.group().lower() in _KEYWORDS:
            found.append(("kw", m.group().lower(), i))
        elif kind == "number":
            found.append(("number", float(m.group()), i))
        elif kind == "var":
            found.append(("var", m.group()[1:], i))
        elif kind != "ws":
            found.append((kind, m.group(), i))
        i = m.end()
    return found


class Predicate:
    """A parsed Query Predicate: ``matches(entry, variables)``; the variables it
    uses are ``used``. Raises :class:`PredicateError` for what the spec does not allow."""

    def __init__(self, text: str):
        self.text, self.toks, self.pos, self.used = text, tokens(text), 0, set()
        self.fields = [INVENTORY_FIELDS]
        self.run = self._or()
        if self.pos != len(self.toks):
            self._fail("end of input")

    def matches(self, entry: dict, variables: dict) -> bool:
        return self.run(entry, variables)

    # -- parsing
    def _peek(self, kind=None, value=None):
        if self.pos < len(self.toks):
            tok = self.toks[self.pos]
            if (kind is None or tok[0] == kind) and (value is None or tok[1] == value):
                return tok
        return None

    def _take(self, kind=None, value=None):
        tok = self._peek(kind, value)
        if tok is not None:
            self.pos += 1
        return tok

    def _fail(self, expected: str):
        if self.pos < len(self.toks):
            _, value, at = self.toks[self.pos]
            got = self.text[at]
        else:
            got, at = "EOI", len(self.text)
        raise PredicateError(f"Invalid input '{got}', expected {expected} (line 1, column {at + 1})")

    def _need(self, kind, value=None, expected=None):
        tok = self._take(kind, value)
        if tok is None:
            self._fail(expected or repr(value or kind))
        return tok

    def _or(self):
        left = self._and()
        while self._take("kw", "or"):
            right, prev = self._and(), left
            left = (lambda a, b: lambda e, v: a(e, v) or b(e, v))(prev, right)
        return left

    def _and(self):
        left = self._factor()
        while self._take("kw", "and"):
            right, prev = self._factor(), left
            left = (lambda a, b: lambda e, v: a(e, v) and b(e, v))(prev, right)
        return left

    def _factor(self):
        if self._take("kw", "not"):
            inner = self._factor()
            return lambda e, v: not inner(e, v)
        if self._take("op", "("):
            inner = self._or()
            self._need("op", ")", "')'")
            return inner
        return self._condition()

    def _condition(self):
        tok = self._need("ident", expected="field name, 'not' or '('")
        name = tok[1]
        if name not in self.fields[-1]:
            raise PredicateError(f"The field '{name}' does not exist.")
        if self._take("op", "("):  # embedded: descend into the object
            self.fields.append(REFERENCE_FIELDS if name == "supplyChannel" else set())
            inner = self._or()
            self.fields.pop()
            self._need("op", ")", "')'")
            return lambda e, v: isinstance(e.get(name), dict) and inner(e[name], v)
        if self._take("kw", "is"):
            negate = bool(self._take("kw", "not"))
            self._need("kw", "defined", "'defined'")
            return lambda e, v: (e.get(name) is None) if negate else (e.get(name) is not None)
        negate = bool(self._take("kw", "not"))
        if self._take("kw", "in"):
            values = self._values()
            return lambda e, v: (e.get(name) in values(v)) != negate
        if negate:
            self._fail("'in'")
        op = self._need("op", expected="comparison operator, 'in' or 'is'")[1]
        value = self._value()
        compare = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<>": lambda a, b: a != b,
                   ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
                   "<=": lambda a, b: a <= b}.get(op)
        if compare is None:
            self._fail("comparison operator")
        return lambda e, v: e.get(name) is not None and compare(e.get(name), value(v)[0])

    def _value(self):
        """A function of the variables giving the value (a list of one, or a variable's values)."""
        tok = self._take("var")
        if tok is not None:
            return self._variable(tok[1])
        tok = self._take("string") or self._take("number") or self._take("kw", "true") or self._take("kw", "false")
        if tok is None:
            self._fail("input parameter or primitive value")
        value = {"true": True, "false": False}.get(tok[1], tok[1]) if tok[0] == "kw" else tok[1]
        return lambda v: [value]

    def _values(self):
        if self._peek("var"):
            return self._value()
        self._need("op", "(", "'(' or input parameter")
        parts = [self._value()]
        while self._take("op", ","):
            parts.append(self._value())
        self._need("op", ")", "comma or ')'")
        return lambda v: [x for p in parts for x in p(v)]

    def _variable(self, name: str):
        self.used.add(name)
        return lambda v: v[name]


# -- the stand-in ------------------------------------------------------------------

class Commercetools(FakeErp):
    """The stand-in; see the module docstring."""

    def __init__(self, project_key: str = "atp-demo", client_id: str = "ct-client-0001",
                 client_secret: str = "ct-secret-0001", scopes: tuple = ("view_products:{project}",)):
        super().__init__()
        self.respond = Commercetools._respond
        self.project_key = project_key
        self.clients = {client_id: (client_secret, {s.format(project=project_key) for s in scopes})}
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime_s = 172800  # 48 h
        self.entries: list[dict] = []
        self.tokens: dict[str, set] = {}  # token -> its scopes
        self.refuse_tokens = False
        self.refusals: list[str] = []
        self.asked: list[dict] = []
        self._throttle: list[str] = []
        self._ids = itertools.count(1)
        self._ct_lock = threading.Lock()

    @property
    def inventory_path(self) -> str:
        return f"/{self.project_key}/inventory"

    def _is_inventory(self, raw_path: str) -> bool:
        """``raw_path`` (as sent) is ``/{projectKey}/inventory``, each segment percent-decoded."""
        return [unquote(s) for s in raw_path.split("/")] == ["", self.project_key, "inventory"]

    def add(self, sku: str, channel: str | None = None, available=0, on_stock=None, **more) -> dict:
        """A documented InventoryEntry (fixtures/commercetools/inventory_entry.json)."""
        entry = {**fixture("inventory_entry.json"), "id": str(uuid.uuid4()), "sku": sku,
                 "availableQuantity": available,
                 "quantityOnStock": available if on_stock is None else on_stock, **more}
        del entry["key"]
        if channel is not None:
            entry["supplyChannel"] = {"typeId": "channel", "id": channel}
        self.entries.append(entry)
        return entry

    def throttle(self, n: int, retry_after: str = "1") -> None:
        self._throttle = [retry_after] * n

    def revoke_tokens(self) -> None:
        super().revoke_tokens()
        self.tokens.clear()

    def inventory_calls(self):
        return [s for s in list(self.log) if self._is_inventory(s.path)]

    # -- the endpoints ---------------------------------------------------------

    def _respond(self, seen):
        if seen.path == TOKEN_PATH:
            if seen.method != "POST":
                return 405, error(405, "MethodNotAllowed", "Method not allowed.")
            return self._token_endpoint(seen)
        if self._is_inventory(seen.path):
            if seen.method != "GET":  # POST here creates an entry: not what a reader may do
                return 400, error(400, "InvalidOperation", f"{seen.method} creates or changes inventory entries.")
            return self._inventory(seen)
        return 404, error(404, "ResourceNotFound", f"The resource at '{seen.path}' was not found.")

    def _refuse(self, status: int, code: str, message: str, reason: str, auth: bool = True):
        self.refusals.append(reason)
        return status, (auth_error if auth else error)(status, code, message)

    def _token_endpoint(self, seen):
        basic = seen.headers.get("authorization", "")
        try:
            client_id, _, secret = base64.b64decode(basic[6:], validate=True).decode().partition(":")
        except ValueError:
            client_id, secret = None, None
        if not basic.startswith("Basic ") or self.clients.get(client_id, (None,))[0] != secret:
            return self._refuse(401, "invalid_client", "Please provide valid client credentials using HTTP "
                                "Basic Authentication.", "client credentials")
        if seen.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self._refuse(400, "invalid_request", "Expected a form post.", "not a form post")
        form = parse_qsl(seen.body.decode(), keep_blank_values=True)
        names = [k for k, _ in form]
        if len(set(names)) != len(names) or not set(names) <= {"grant_type", "scope"}:
            return self._refuse(400, "invalid_request", "Unexpected parameters.", f"form fields {sorted(names)}")
        form = dict(form)
        if form.get("grant_type") != "client_credentials":
            return self._refuse(400, "unsupported_grant_type", "Unsupported grant type.", "grant_type")
        allowed = self.clients[client_id][1]
        scopes = set(form["scope"].split()) if "scope" in form else set(allowed)
        if not scopes or not scopes <= allowed:
            return self._refuse(400, "invalid_scope", f"Invalid scopes: {' '.join(sorted(scopes - allowed))}.",
                                f"scope {form.get('scope')!r}")
        token = f"ct-{next(self._ids):04d}-{uuid.uuid4().hex[:16]}"
        with self._ct_lock:
            self.tokens[token] = scopes
        body = fixture("token_response.json")
        body.update(access_token=token, expires_in=self.token_lifetime_s, scope=" ".join(sorted(scopes)))
        return 200, body

    def _inventory(self, seen):
        auth = seen.headers.get("authorization", "")
        scopes = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if scopes is None or self.refuse_tokens:
            self.refusals.append("token")
            return 401, fixture("error_401_invalid_token.json")
        if not scopes & {f"view_products:{self.project_key}", f"manage_products:{self.project_key}"}:
            self.refusals.append("scope")
            return 403, fixture("error_403_insufficient_scope.json")
        with self._ct_lock:
            if self._throttle:
                return 429, fixture("error_429.json"), {"Retry-After": self._throttle.pop()}
        if seen.body:
            return self._invalid("A GET carries no body.")
        try:
            query = parse_qsl(urlsplit(seen.target).query, keep_blank_values=True, strict_parsing=True)
        except ValueError as e:
            return self._invalid(f"Malformed query string: {e}.")
        params, variables = {}, {}
        for name, value in query:
            var = _VAR.match(name)
            if var:
                variables.setdefault(var[1], []).append(value)
            elif name in PARAMS and name not in params:
                params[name] = value
            else:
                return self._invalid(f"Unexpected query parameter '{name}'.")
        try:
            limit = _bounded(params.get("limit", "20"), "limit", MAX_LIMIT)
            offset = _bounded(params.get("offset", "0"), "offset", MAX_OFFSET)
        except ValueError as e:
            return self._invalid(str(e))
        found = list(self.entries)
        if "where" in params:
            try:
                predicate = Predicate(params["where"])
                missing = sorted(predicate.used - set(variables))
                if missing:
                    raise PredicateError(f"Missing value for input variable '{missing[0]}'.")
                found = [e for e in found if predicate.matches(e, variables)]
            except PredicateError as e:
                return self._invalid(f"Malformed parameter: where: Syntax error while parsing 'where'. {e}"
                                     if str(e).startswith("Invalid input") else f"Malformed parameter: where: {e}")
        sort = params.get("sort")
        if sort is not None:
            m = re.fullmatch(r"(id|sku|createdAt|lastModifiedAt) (asc|desc)", sort)
            if m is None:
                return self._invalid(f"Malformed parameter: sort: '{sort}'.")
            found.sort(key=lambda e: e[m[1]], reverse=m[2] == "desc")
        self.asked.append({"where": params.get("where"), "vars": variables, "limit": limit, "offset": offset,
                           "sort": sort})
        page = [copy.deepcopy(e) for e in found[offset:offset + limit]]
        body = {"limit": limit, "offset": offset, "count": len(page), "total": len(found), "results": page}
        if params.get("withTotal") == "false":
            del body["total"]
        return 200, body

    def _invalid(self, message: str):
        self.refusals.append(message)
        return 400, error(400, "InvalidInput", message)


def _bounded(text: str, name: str, top: int) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) > top:
        raise ValueError(f"Malformed parameter: {name}: must be a number from 0 to {top}.")
    return int(text)
