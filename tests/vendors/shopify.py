"""A loopback stand-in for Shopify's Admin GraphQL API (inventory), from Shopify's documentation.

``POST /admin/api/{version}/graphql.json`` on a :class:`tests.erp_server.FakeErp`
(its faults and logs apply). The version must be one of ``versions`` (else 404
``{"errors": "Not Found"}``); the header ``X-Shopify-Access-Token`` must be the
shop's ``token`` (else the 401 of ``fixtures/shopify/invalid_token.json``); a JSON
body (``Content-Type: application/json``) with ``query`` and ``variables`` only.

The query must be the connector's shape, checked text by text: the operation
``($q: String!, $after: String)``, ``inventoryItems(first: N, after: $after,
query: $q)``, ``nodes { sku <alias>: inventoryLevel(locationId: "<gid>") {
location { id } quantities(names: ["<name>"]) { name quantity } } ... }`` and
``pageInfo { hasNextPage endCursor }``. A quantity name Shopify does not have,
an id that is not a location gid, or a requested cost over 1000 (2 + N x (1 + 3
per alias)) is a 200 with ``errors`` (the latter ``MAX_COST_EXCEEDED``).
``variables.q`` is parsed with Shopify's search grammar (``sku:value`` terms
joined by ``OR``; a value is a name without whitespace or ``: \\ ( )``, or a
quoted string with backslash escapes); anything else is an error and its reason
is kept in ``refusals``. Like Shopify's text search, ``sku:abc`` finds every
item whose SKU starts with ``abc`` in any case. ``after`` must be a cursor it
issued.

``items`` is ``{sku: {location number: {quantity name: n}}}`` (a number alone:
``available``). ``throttle(n)`` makes the next ``n`` calls the 200 THROTTLED
answer; ``asked`` keeps ``variables.q`` of every accepted call.
Fixtures and the page each comes from: ``fixtures/shopify/README.md``.
"""
from __future__ import annotations

import base64
import re
import threading
from pathlib import Path

import orjson

from tests.erp_server import FakeErp

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
GID = "gid://shopify/Location/"
NAMES = {"available", "on_hand", "committed", "incoming", "reserved", "damaged", "safety_stock",
         "quality_control"}
_PATH = re.compile(r"^/admin/api/(?P<version>[^/]+)/graphql\.json$")
_STRING = r'"(?:[^"\\]|\\.)*"'
_LEVEL = re.compile(r" (?P<alias>[A-Za-z_]\w*): inventoryLevel\(locationId: (?P<id>" + _STRING + r")\)"
                    r" \{ location \{ id \} quantities\(names: \[(?P<name>" + _STRING + r")\]\)"
                    r" \{ name quantity \} \}")
_QUERY = re.compile(r"^query \w+\(\$q: String!, \$after: String\) \{ inventoryItems\(first: (?P<first>\d+),"
                    r" after: \$after, query: \$q\) \{ nodes \{ sku(?P<levels>.*?) \}"
                    r" pageInfo \{ hasNextPage endCursor \} \} \}$", re.S)


def fixture(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


def graphql_errors(message: str, code: str | None = None) -> dict:
    error = {"message": message}
    if code:
        error["extensions"] = {"code": code}
    return {"errors": [error]}


def parse_search(q: str) -> list[str]:
    """The SKU values of ``sku:v OR sku:v ...`` (Shopify's search grammar); ValueError otherwise."""
    values, i = [], 0
    while True:
        if not q.startswith("sku:", i):
            raise ValueError(f"expected sku: at char {i}")
        i += 4
        if i < len(q) and q[i] in "\"'":
            quote, i, value = q[i], i + 1, []
            while i < len(q) and q[i] != quote:
                if q[i] == "\\":
                    i += 1
                    if i >= len(q):
                        raise ValueError("a backslash ends the query")
                value.append(q[i])
                i += 1
            if i >= len(q):
                raise ValueError("an unterminated quoted value")
            i += 1
            values.append("".join(value))
        else:
            m = re.compile(r"[^\s:\\()]+").match(q, i)
            if m is None:
                raise ValueError(f"no value at char {i}")
            values.append(m.group())
            i = m.end()
        if i == len(q):
            return values
        if not q.startswith(" OR ", i):
            raise ValueError(f"expected ' OR ' at char {i}: {q[i:i + 20]!r}")
        i += 4


class ShopifyAdmin(FakeErp):
    """The stand-in; see the module docstring."""

    def __init__(self, token: str = "shpat_standin0123456789abcdef0123456789",
                 versions: tuple = ("2025-04", "2025-07", "2025-10", "2026-01")):
        super().__init__()
        self.respond = ShopifyAdmin._respond
        self.token, self.versions = token, versions
        self.items: dict = {}
        self.refusals: list[str] = []
        self.asked: list[str] = []
        self._throttled = 0
        self._sh_lock = threading.Lock()

    def throttle(self, n: int) -> None:
        self._throttled = n

    def graphql_calls(self):
        return [s for s in list(self.log) if _PATH.match(s.path)]

    def _refuse(self, reason: str, body: dict | None = None):
        self.refusals.append(reason)
        return 200, body or graphql_errors(reason)

    def _respond(self, seen):
        m = _PATH.match(seen.path)
        if m is None or m["version"] not in self.versions:
            return 404, {"errors": "Not Found"}
        if seen.headers.get("x-shopify-access-token") != self.token:
            return 401, fixture("invalid_token.json")
        if seen.method != "POST" or seen.headers.get("content-type", "").split(";")[0] != "application/json":
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}
        with self._sh_lock:
            if self._throttled:
                self._throttled -= 1
                return 200, fixture("throttled.json")
        try:
            body = seen.json()
        except orjson.JSONDecodeError:
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}
        if not isinstance(body, dict) or set(body) - {"query", "variables", "operationName"}:
            return self._refuse(f"unexpected body {body!r}"[:200])
        query, variables = body.get("query"), body.get("variables") or {}
        q = _QUERY.match(query or "")
        if q is None:
            return self._refuse(f"not the inventory query: {query!r}"[:300])
        levels, rest = [], q["levels"]
        for lv in _LEVEL.finditer(rest):
            levels.append((lv["alias"], orjson.loads(lv["id"]), orjson.loads(lv["name"])))
        if _LEVEL.sub("", rest) != "":
            return self._refuse(f"not inventoryLevel aliases: {rest!r}"[:300])
        for alias, gid, name in levels:
            if name not in NAMES:
                return self._refuse(f"quantity name {name!r}", graphql_errors(
                    f"The quantity name '{name}' is not valid.", "INVALID"))
            if not (gid.startswith(GID) and gid[len(GID):].isdigit()):
                return self._refuse(f"location id {gid!r}", graphql_errors(f"Invalid global id '{gid}'", "INVALID"))
        first = int(q["first"])
        cost = 2 + first * (1 + 3 * len(levels))
        if not 1 <= first <= 250 or cost > 1000:
            body = fixture("max_cost_exceeded.json")
            body["errors"][0]["message"] = body["errors"][0]["message"].replace("1502", str(cost))
            body["errors"][0]["extensions"]["cost"] = cost
            return self._refuse(f"cost {cost} (first {first})", body)
        if set(variables) - {"q", "after"} or not isinstance(variables.get("q"), str):
            return self._refuse(f"variables {variables!r}"[:200])
        try:
            wanted = parse_search(variables["q"])
        except ValueError as e:
            return self._refuse(f"search {variables['q']!r}: {e}"[:300])
        offset = 0
        if variables.get("after") is not None:
            try:
                offset = int(base64.b64decode(variables["after"]).decode().removeprefix("offset:"))
            except ValueError:
                return self._refuse(f"cursor {variables['after']!r}", graphql_errors("Invalid cursor for current pagination sort.", "INVALID"))
        with self._sh_lock:
            self.asked.append(variables["q"])
        found = [sku for sku in self.items if any(sku.lower().startswith(w.lower()) for w in wanted)]
        page = found[offset:offset + first]
        nodes = []
        for sku in page:
            node = {"sku": sku}
            for alias, gid, name in levels:
                stock = self.items[sku].get(int(gid[len(GID):]))
                if stock is None:
                    node[alias] = None  # not stocked at that location
                    continue
                values = stock if isinstance(stock, dict) else {"available": stock}
                node[alias] = {"location": {"id": gid},
                               "quantities": [{"name": name, "quantity": values.get(name, 0)}]}
            nodes.append(node)
        end = offset + len(page)
        answer = fixture("inventory_items_response.json")
        answer["data"]["inventoryItems"] = {
            "nodes": nodes, "pageInfo": {"hasNextPage": end < len(found),
                                         "endCursor": base64.b64encode(f"offset:{end}".encode()).decode()
                                         if page else None}}
        answer["extensions"]["cost"]["requestedQueryCost"] = cost
        return 200, answer
