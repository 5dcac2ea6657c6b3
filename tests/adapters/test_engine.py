"""The REST engine (adapters/engine): templates, extraction and call granularity,
against a real HTTP server on loopback that records what it was sent."""
import json
import threading

import pytest
from marshmallow import ValidationError

from atp_bridge.adapters.engine.extract import Extractor
from atp_bridge.adapters.engine.templates import CallTemplate
from atp_bridge.adapters.rest_options import RestOptionsSchema
from atp_bridge.errors import AdapterError
from tests.adapters.conftest import batch

HOSTILE = ["it's", 'say "hi"', "a) or (1=1", "x or y", "a&b=c", "100%", "line\nbreak", "a/b?c#d"]


def sap_like(erp, seen):
    """One pair per call, answered as an OData V2 function import (no ids in the answer)."""
    material, plant = seen.query["Material"], seen.query["SupplyingPlant"]
    qty = erp.stock.get((material, plant))
    return 200, {"d": {"DetermineAvailabilityAt": {"AvailableQuantityInBaseUnit": f"{qty:.3f}"}}}


def odata_literal(text: str) -> str:
    assert text[0] == text[-1] == "'"
    inner = text[1:-1]
    assert "'" not in inner.replace("''", ""), f"unescaped quote in {text!r}"
    return inner.replace("''", "'")


def sap_literals(erp, seen):
    """Like sap_like, but the parameters are OData literals: 'it''s' is it's."""
    material, plant = odata_literal(seen.query["Material"]), odata_literal(seen.query["SupplyingPlant"])
    qty = erp.stock.get((material, plant), 0)
    return 200, {"d": {"DetermineAvailabilityAt": {"AvailableQuantityInBaseUnit": str(qty)}}}


PER_PAIR = {"per": "pair", "path": "/DetermineAvailabilityAt",
            "params": {"Material": "{{ product | odata }}", "SupplyingPlant": "{{ location | odata }}",
                       "ATPCheckingRule": "{{ vars.rule | odata }}"},
            "vars": {"rule": "A"},
            "extract": {"rows": "d.DetermineAvailabilityAt", "atp": "AvailableQuantityInBaseUnit"}}


def test_per_pair_makes_one_call_per_pair_with_the_ids_where_the_template_puts_them(erp, rest):
    erp.respond = sap_literals
    erp.stock = {("TG11", "1710"): 12, ("TG12", "1710"): 3, ("TG11", "1720"): 0}
    adapter = rest(**PER_PAIR)
    answer = adapter.fetch(batch(["TG11", "TG12"], ["1710", "1720"]))
    assert answer == [12.0, 0.0, 3.0, 0.0]
    seen = erp.requests("/atp/DetermineAvailabilityAt")
    assert sorted((s.method, s.query["Material"], s.query["SupplyingPlant"], s.query["ATPCheckingRule"])
                  for s in seen) == [("GET", "'TG11'", "'1710'", "'A'"), ("GET", "'TG11'", "'1720'", "'A'"),
                                     ("GET", "'TG12'", "'1710'", "'A'"), ("GET", "'TG12'", "'1720'", "'A'")]


@pytest.mark.parametrize("product", HOSTILE)
def test_a_hostile_product_id_stays_one_odata_literal_in_one_parameter(erp, rest, product):
    erp.respond = sap_literals
    erp.stock = {(product, "1710"): 7}
    adapter = rest(**PER_PAIR)
    assert adapter.fetch(batch([product], ["1710"])) == [7]
    (seen,) = erp.requests("/atp/DetermineAvailabilityAt")
    assert set(seen.query) == {"Material", "SupplyingPlant", "ATPCheckingRule"}  # no parameter injected
    assert odata_literal(seen.query["Material"]) == product


@pytest.mark.parametrize("product", HOSTILE)
def test_a_hostile_id_stays_one_path_segment(erp, rest, product):
    erp.respond = lambda erp, seen: (200, {"available": 5})
    adapter = rest(per="product", path="/items/{{ product }}/stock", params={"site": "{{ locations | join(',') }}"},
                   extract={"location": "'S1'", "atp": "available"})
    assert adapter.fetch(batch([product], ["S1"])) == [5]
    (seen,) = [s for s in erp.log if s.path.endswith("/stock")]
    from urllib.parse import unquote
    segments = seen.target.split("?")[0].split("/")
    assert segments[:3] == ["", "atp", "items"] and segments[4:] == ["stock"]
    assert unquote(segments[3]) == product


@pytest.mark.parametrize("product", HOSTILE)
def test_a_hostile_id_cannot_change_the_structure_of_a_json_body_or_a_sql_query(erp, rest, product):
    got = {}

    def suiteql(erp, seen):
        got["body"] = seen.json()
        return 200, {"items": [{"product": product, "location": "L1", "atp": "4"}]}

    erp.respond = suiteql
    adapter = rest(body={"q": "SELECT product, location, atp FROM t WHERE product IN "
                              "({{ products | map('sql') | join(', ') }})",
                         "ids": "{{ products }}", "first": "{{ products[0] }}", "n": 2},
                   extract={"rows": "items", "product": "product", "location": "location"})
    assert adapter.fetch(batch([product, "B"], ["L1"])) == [4.0, None]
    body = got["body"]
    assert set(body) == {"q", "ids", "first", "n"} and body["n"] == 2
    assert body["ids"] == [product, "B"] and body["first"] == product
    literal = "'" + product.replace("'", "''") + "'"
    assert body["q"] == f"SELECT product, location, atp FROM t WHERE product IN ({literal}, 'B')"


def test_per_location_and_per_product_split_the_calls_and_take_the_ids_from_the_call(erp, rest):
    calls = []

    def per_location(erp, seen):
        calls.append(seen.json())
        loc = seen.json()["site"]
        return 200, {"rows": [{"sku": p, "qty": erp.stock.get((p, loc))} for p in seen.json()["skus"]]}

    erp.respond, erp.stock = per_location, {("A", "S1"): 1, ("B", "S1"): 2, ("A", "S2"): 3}
    adapter = rest(per="location", body={"site": "{{ location }}", "skus": "{{ products }}"},
                   extract={"rows": "rows", "product": "sku", "atp": "qty"})
    assert adapter.fetch(batch(["A", "B"], ["S1", "S2"])) == [1, 3, 2, None]
    assert sorted(c["site"] for c in calls) == ["S1", "S2"] and all(c["skus"] == ["A", "B"] for c in calls)


def test_nested_rows_take_the_location_from_their_parent(erp, rest):
    erp.respond = lambda erp, seen: (200, {"locations": [
        {"locationIdentifier": "S1", "inventoryRecords": [{"stockKeepingUnit": "A", "availableToFulfill": 4},
                                                         {"stockKeepingUnit": "B", "availableToFulfill": 0}]},
        {"locationIdentifier": "S2", "inventoryRecords": [{"stockKeepingUnit": "A", "availableToFulfill": 9}]}]})
    adapter = rest(body={"skus": "{{ products }}", "locations": "{{ locations }}"},
                   extract={"rows": ["locations", "inventoryRecords"], "product": "stockKeepingUnit",
                            "location": "_parent.locationIdentifier", "atp": "availableToFulfill"})
    assert adapter.fetch(batch(["A", "B"], ["S1", "S2"])) == [4, 9, 0, None]


@pytest.mark.parametrize("combine, expected", [("sum", 7.5), ("max", 5.0), ("min", 2.5), ("first", 5.0)])
def test_rows_of_one_pair_are_combined_and_filtered_by_jmespath(erp, rest, combine, expected):
    erp.respond = lambda erp, seen: (200, {"d": {"results": [
        {"Material": "M", "Plant": "P", "InventoryStockType": "01", "Qty": "5.000"},
        {"Material": "M", "Plant": "P", "InventoryStockType": "01", "Qty": "2.500"},
        {"Material": "M", "Plant": "P", "InventoryStockType": "02", "Qty": "100"}]}})
    adapter = rest(params={"$format": "json"},
                   extract={"rows": "d.results[?InventoryStockType=='01']", "product": "Material",
                            "location": "Plant", "atp": "Qty", "combine": combine})
    assert adapter.fetch(batch(["M"], ["P"])) == [expected]


def test_the_atp_may_be_a_difference_of_two_fields(erp, rest):
    erp.respond = lambda erp, seen: (200, [{"sku": "A", "loc": "S1", "quantity": 10, "reserved_quantity": "3"}])
    adapter = rest(params={"q": "x"}, extract={"product": "sku", "location": "loc", "atp": "quantity",
                                               "minus": "reserved_quantity"})
    assert adapter.fetch(batch(["A"], ["S1"])) == [7]


def test_a_scalar_answer_is_the_atp_of_the_call(erp, rest):
    erp.respond = lambda erp, seen: (200, b"12")
    adapter = rest(per="pair", params={"sku": "{{ product }}", "loc": "{{ location }}"}, extract={"atp": "@"})
    assert adapter.fetch(batch(["A", "B"], ["S1"])) == [12, 12]


def test_a_value_that_is_not_a_number_is_an_adapter_error_naming_the_path(erp, rest):
    erp.respond = lambda erp, seen: (200, {"items": [{"sku": "A", "loc": "S1", "qty": "lots"}]})
    adapter = rest(params={"q": "x"}, extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty"})
    with pytest.raises(AdapterError) as e:
        adapter.fetch(batch(["A"], ["S1"]))
    assert "item 0: atp at 'qty' is not a finite number" in str(e.value)


def test_templated_headers_are_rendered_per_call_and_static_ones_kept(erp, rest):
    erp.respond = lambda erp, seen: (200, {"qty": 1})
    adapter = rest(per="product", params={"p": "{{ product }}"},
                   headers={"X-Sku": "{{ product }}", "X-Static": "yes"},
                   extract={"location": "'S1'", "atp": "qty"})
    adapter.fetch(batch(["A", "B"], ["S1"]))
    seen = erp.requests("/atp")
    assert sorted(s.headers["x-sku"] for s in seen) == ["A", "B"]
    assert {s.headers["x-static"] for s in seen} == {"yes"}


def test_a_header_value_with_a_line_break_is_refused_not_sent(erp, rest):
    adapter = rest(per="product", params={"p": "x"}, headers={"X-Sku": "{{ product }}"},
                   extract={"location": "'S1'", "atp": "qty"})
    with pytest.raises(AdapterError) as e:
        adapter.fetch(batch(["A\r\nX-Evil: 1"], ["S1"]))
    assert "headers.X-Sku: the rendered value holds a line break" in str(e.value)
    assert erp.requests("/atp") == []


def test_per_batch_respects_batch_size_and_max_concurrency(erp, rest):
    lock, seen_sizes = threading.Lock(), []

    def grid(erp, seen):
        body = seen.json()
        with lock:
            seen_sizes.append(len(body["p"]))
        return 200, {"rows": [{"p": p, "l": loc, "a": 1} for p in body["p"] for loc in body["l"]]}

    erp.respond = grid
    adapter = rest(batch_size=10, max_concurrency=2, body={"p": "{{ products }}", "l": "{{ locations }}"},
                   extract={"rows": "rows", "product": "p", "location": "l", "atp": "a"})
    products = [f"P{i}" for i in range(25)]
    assert adapter.fetch(batch(products, ["S1", "S2"])) == [1] * 50
    assert sorted(seen_sizes) == [5, 5, 5, 5, 5] and erp.max_in_flight <= 2


# -- config problems, with the key ------------------------------------------------

@pytest.mark.parametrize("options, key, message", [
    ({"params": {"a": "{{ prodct }}"}, "per": "pair", "extract": {"atp": "a"}}, "params.a",
     "unknown name 'prodct' in the template"),
    ({"params": {"a": "{{ product }}"}, "extract": {"atp": "a", "product": "p", "location": "l"}}, "params.a",
     "unknown name 'product' in the template"),
    ({"params": {"a": "{{ product "}, "per": "pair", "extract": {"atp": "a"}}, "params.a",
     "TemplateSyntaxError"),
    ({"path": "/x/{% for %}", "per": "pair", "extract": {"atp": "a"}}, "path", "TemplateSyntaxError"),
    ({"body": {"q": ["{{ 1 + }}"]}, "per": "pair", "extract": {"atp": "a"}}, "body.q.0", "TemplateSyntaxError"),
    ({"params": {"a": "b"}}, "extract", "Required with path, params or body"),
    ({"per": "pair"}, "per", "Only with the engine's templates"),
    ({"params": {"a": "b"}, "extract": {"product": "p", "location": "l", "atp": "x["}}, "extract",
     "not a JMESPath expression"),
    ({"params": {"a": "b"}, "extract": {"product": "p"}}, "extract.location", "Required unless per: location or pair"),
    ({"params": {"a": "b"}, "request": {"style": "grid"}, "extract": {"product": "p", "location": "l"}},
     "request", "request is for the built-in wire formats"),
    ({"body": {"a": 1}, "method": "GET", "extract": {"product": "p", "location": "l"}}, "method",
     "GET carries no body"),
    ({"params": {"a": "b"}, "extract": {"product": "p", "location": "l", "combine": "avg"}}, "extract",
     "Must be one of"),
])
def test_a_broken_engine_config_names_the_key(options, key, message):
    with pytest.raises(ValidationError) as e:
        RestOptionsSchema().load({"url": "http://erp.example/atp", **options})
    flat = json.dumps(e.value.messages)
    assert message in flat, flat
    top = key.split(".")[0]
    assert top in e.value.messages or key in e.value.messages, e.value.messages


def test_check_config_reports_a_template_problem_with_file_and_key(config_file):
    from atp_bridge.config import load_config
    from atp_bridge.errors import ConfigError

    path = config_file({"adapters": [{"name": "erp", "type": "rest", "url": "http://erp.example/atp",
                                      "per": "pair", "params": {"Material": "{{ prodcut | odata }}"},
                                      "extract": {"atp": "q"}}]})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [f"{path}: adapters[0].params.Material: unknown name 'prodcut' in the "
                                "template (a call has: location, locations, now, page, pairs, product, products, vars)"]


def test_the_template_sandbox_refuses_python_internals():
    t = CallTemplate(params={"x": "{{ products.__class__.__mro__ }}"})
    with pytest.raises(Exception) as e:
        t.render(t.context(["A"], ["S1"]))
    assert "unsafe" in str(e.value).lower() or "undefined" in str(e.value).lower()


def test_the_extractor_reads_dotted_paths_without_jmespath_and_the_rest_with_it():
    e = Extractor(rows="data.rows", product="id.sku", location="site", atp="stock.free")
    assert e.extract({"data": {"rows": [{"id": {"sku": "A"}, "site": "S1", "stock": {"free": 3}}]}}) == {("A", "S1"): 3}
    j = Extractor(rows="data.rows[?active]", product="id.sku", location="site", atp="max(stock[*].free)")
    assert j.extract({"data": {"rows": [{"active": True, "id": {"sku": "A"}, "site": "S1",
                                         "stock": [{"free": 3}, {"free": 8}]},
                                        {"active": False, "id": {"sku": "B"}, "site": "S1",
                                         "stock": [{"free": 1}]}]}}) == {("A", "S1"): 8}


# -- pagination ------------------------------------------------------------------

ROWS = [{"sku": f"P{i}", "loc": "S1", "qty": i} for i in range(7)]


def test_offset_pages_step_by_limit_until_has_more_is_false(erp, rest):
    def suiteql(erp, seen):
        offset, limit = int(seen.query["offset"]), int(seen.query["limit"])
        page = ROWS[offset:offset + limit]
        return 200, {"items": page, "hasMore": offset + limit < len(ROWS), "offset": offset,
                     "totalResults": len(ROWS)}

    erp.respond = suiteql
    adapter = rest(body={"q": "select"}, paginate={"type": "offset", "limit": 3, "offset_param": "offset",
                                                   "limit_param": "limit", "has_more": "hasMore"},
                   extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty"})
    assert adapter.fetch(batch([r["sku"] for r in ROWS], ["S1"])) == list(range(7))
    assert [(s.query["offset"], s.query["limit"]) for s in erp.requests("/atp")] == \
        [("0", "3"), ("3", "3"), ("6", "3")]


@pytest.mark.parametrize("stop", [{"total": "totalResults"}, {}])
def test_offset_pages_stop_at_the_total_or_at_a_short_page(erp, rest, stop):
    def paged(erp, seen):
        offset = int(seen.query["skip"])
        return 200, {"items": ROWS[offset:offset + 3], "totalResults": len(ROWS)}

    erp.respond = paged
    adapter = rest(params={"q": "x"}, paginate={"type": "offset", "limit": 3, "offset_param": "skip", **stop},
                   extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty"})
    assert adapter.fetch(batch(["P0", "P6"], ["S1"])) == [0, 6]
    assert [s.query["skip"] for s in erp.requests("/atp")] == ["0", "3", "6"]


def test_a_next_link_in_the_body_is_followed_relative_to_the_page(erp, rest):
    def odata(erp, seen):
        start = int(seen.query.get("$skiptoken", "0"))
        body = {"d": {"results": ROWS[start:start + 3]}}
        if start + 3 < len(ROWS):
            body["d"]["__next"] = f"A_Stock?$skiptoken={start + 3}"
        return 200, body

    erp.respond = odata
    adapter = rest(url=f"{erp.url}/odata/A_Stock", params={"$format": "json"},
                   paginate={"type": "next_link", "next": "d.__next"},
                   extract={"rows": "d.results", "product": "sku", "location": "loc", "atp": "qty"})
    assert adapter.fetch(batch(["P1", "P5"], ["S1"])) == [1, 5]
    assert [s.target for s in erp.requests("/odata/A_Stock")] == [
        "/odata/A_Stock?%24format=json", "/odata/A_Stock?$skiptoken=3", "/odata/A_Stock?$skiptoken=6"]


def test_the_link_header_is_followed(erp, rest):
    def linked(erp, seen):
        page = int(seen.query.get("page", "1"))
        headers = {"Link": f'<{erp.url}/atp?page={page + 1}>; rel="next"'} if page < 3 else {}
        return 200, {"rows": ROWS[(page - 1) * 3:page * 3]}, headers

    erp.respond = linked
    adapter = rest(params={"page": "1"}, paginate={"type": "link_header"},
                   extract={"rows": "rows", "product": "sku", "location": "loc", "atp": "qty"})
    assert adapter.fetch(batch(["P0", "P6"], ["S1"])) == [0, 6]
    assert [s.query["page"] for s in erp.requests("/atp")] == ["1", "2", "3"]


def test_a_graphql_cursor_goes_back_in_the_body_through_page_cursor(erp, rest):
    def graphql(erp, seen):
        after = seen.json()["variables"]["after"]
        start = 0 if after is None else int(after[1:]) + 1
        nodes = ROWS[start:start + 3]
        end = start + len(nodes) - 1
        return 200, {"data": {"items": {"nodes": nodes, "pageInfo": {
            "hasNextPage": end < len(ROWS) - 1, "endCursor": f"c{end}"}}}}

    erp.respond = graphql
    adapter = rest(body={"query": "query($after: String) { items(after: $after) { nodes } }",
                         "variables": {"after": "{{ page.cursor }}"}},
                   paginate={"type": "cursor", "cursor": "data.items.pageInfo.endCursor",
                             "has_next": "data.items.pageInfo.hasNextPage"},
                   extract={"rows": "data.items.nodes", "product": "sku", "location": "loc", "atp": "qty"})
    assert adapter.fetch(batch(["P0", "P6"], ["S1"])) == [0, 6]
    assert [s.json()["variables"]["after"] for s in erp.requests("/atp")] == [None, "c2", "c5"]


def test_more_pages_than_max_pages_is_an_error_not_a_truncated_answer(erp, rest):
    erp.respond = lambda erp, seen: (200, {"items": ROWS[:3], "hasMore": True})
    adapter = rest(params={"q": "x"}, paginate={"type": "offset", "limit": 3, "offset_param": "o",
                                                "has_more": "hasMore", "max_pages": 4},
                   extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty"})
    with pytest.raises(AdapterError) as e:
        adapter.fetch(batch(["P0"], ["S1"]))
    assert "more than paginate.max_pages=4 pages" in str(e.value)
    assert len(erp.requests("/atp")) == 4


def test_rows_of_one_pair_on_two_pages_are_combined(erp, rest):
    pages = [{"items": [{"sku": "A", "loc": "S1", "qty": 2}], "more": True},
             {"items": [{"sku": "A", "loc": "S1", "qty": 5}], "more": False}]
    erp.respond = lambda erp, seen: (200, pages[int(seen.query["o"])])
    adapter = rest(params={"q": "x"}, paginate={"type": "offset", "limit": 1, "offset_param": "o",
                                                "has_more": "more"},
                   extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty", "combine": "sum"})
    assert adapter.fetch(batch(["A"], ["S1"])) == [7]


@pytest.mark.parametrize("paginate, key, message", [
    ({"type": "pages"}, "paginate", "Must be one of: offset, next_link, link_header, cursor"),
    ({"type": "next_link"}, "paginate", "Missing data for required field"),
    ({"type": "cursor", "cursor": "a["}, "paginate", "not a JMESPath expression"),
    ({"type": "offset", "has_more": "m", "total": "t"}, "paginate", "Give has_more or total, not both"),
    ({"type": "offset", "limt": 5}, "paginate", "Unknown field"),
])
def test_a_broken_paginate_block_names_the_key(paginate, key, message):
    with pytest.raises(ValidationError) as e:
        RestOptionsSchema().load({"url": "http://erp.example/atp", "params": {"a": "b"}, "paginate": paginate,
                                  "extract": {"product": "p", "location": "l"}})
    assert key in e.value.messages and message in json.dumps(e.value.messages), e.value.messages


# -- vendor errors ------------------------------------------------------------------

def test_a_429_is_retried_after_retry_after_when_it_fits_the_deadline(erp, rest):
    answers = [(429, {"error": {"message": "Too many requests"}}, {"Retry-After": "1"}),
               (200, {"items": [{"sku": "A", "loc": "S1", "qty": 3}]})]
    erp.respond = lambda erp, seen: answers.pop(0)
    adapter = rest(params={"q": "x"}, extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty"})
    assert adapter.fetch(batch(["A"], ["S1"], seconds=5)) == [3]
    first, second = erp.requests("/atp")
    assert second.at - first.at >= 0.95  # waited what Retry-After asked


def test_a_429_whose_retry_after_does_not_fit_fails_at_once_with_the_vendor_message(erp, rest):
    erp.respond = lambda erp, seen: (429, {"error": {"code": "429", "message": "Rate limit is exceeded"}},
                                     {"Retry-After": "30"})
    adapter = rest(params={"q": "x"}, extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty"})
    with pytest.raises(AdapterError) as e:
        adapter.fetch(batch(["A"], ["S1"], seconds=2))
    assert "HTTP 429 (rate limited; Retry-After did not fit before the deadline): Rate limit is exceeded" in str(e.value)
    assert len(erp.requests("/atp")) == 1


@pytest.mark.parametrize("body, message", [
    ({"error": {"code": "/IWBEP/CM_MGW_RT/020", "message": {"lang": "en", "value": "Material TG99 does not exist"}}},
     "Material TG99 does not exist"),  # OData V2 (SAP)
    ({"error": {"code": "BadRequest", "message": "Invalid filter"}}, "Invalid filter"),  # OData V4
    ({"errors": [{"message": "Field 'x' doesn't exist"}, {"message": "second"}]}, "Field 'x' doesn't exist; second"),
    ({"type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "title": "Bad Request", "status": 400,
      "o:errorDetails": [{"detail": "Invalid search query.", "o:errorCode": "INVALID_PARAMETER"}]},
     "Invalid search query."),  # NetSuite
])
def test_a_vendor_error_body_becomes_the_adapter_error_message(erp, rest, body, message):
    erp.respond = lambda erp, seen: (400, body)
    adapter = rest(params={"q": "x"}, extract={"rows": "items", "product": "sku", "location": "loc", "atp": "qty"})
    with pytest.raises(AdapterError) as e:
        adapter.fetch(batch(["A"], ["S1"]))
    assert str(e.value).endswith(f"HTTP 400: {message}")


def test_a_graphql_200_that_carries_errors_is_an_error_not_a_zero(erp, rest):
    erp.respond = lambda erp, seen: (200, {"data": None, "errors": [
        {"message": "Throttled", "extensions": {"code": "THROTTLED"}}]})
    adapter = rest(body={"query": "{ x }"}, extract={"rows": "data.items", "product": "sku", "location": "loc",
                                                      "atp": "qty", "errors": "errors[].message"})
    with pytest.raises(AdapterError) as e:
        adapter.fetch(batch(["A"], ["S1"]))
    assert "the answer reports errors: Throttled" in str(e.value)
