"""``type: shopify`` (inventory over the Admin GraphQL API, X-Shopify-Access-Token)
against its loopback stand-in (tests/vendors/shopify.py), through the real REST
machinery; and the engine's ``extract.retry_on`` it needs for THROTTLED."""
from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from atp_bridge.adapters import adapter_class
from atp_bridge.adapters.engine.wire import Call
from atp_bridge.adapters.engine.connectors.shopify import MAX_LOCATIONS, MAX_SKUS, Shopify
from atp_bridge.adapters.idmaps import IdMaps
from atp_bridge.adapters.rest import RestAdapter
from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError, ConfigError
from tests.adapters.conftest import batch
from tests.serve import BridgeProcess
from tests.vendors.shopify import FIXTURES, ShopifyAdmin, parse_search

HOSTILE = ["it's", 'say "hi"', "a OR sku:b", "sku:x", "(paren)", "colon:value", "back\\slash", "100%",
           "tab\there", "{{ 7*7 }}", "{% raw %}", "né/ü?#&", "\\\"", "trailing\\"]
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "shopify"
PATH = "/admin/api/2025-10/graphql.json"
L1, L2 = "gid://shopify/Location/101", "gid://shopify/Location/202"


@pytest.fixture
def shop():
    with ShopifyAdmin() as server:
        yield server


@pytest.fixture
def shopify(shop, built):
    """``shopify(**options)`` -> the connector loaded through its schema, closed after the test."""
    def make(**options):
        options = {"url": shop.url, "access_token": shop.token, **options}
        return built(Shopify, "shopify", "shop", options)

    return make


def test_the_type_name_is_registered():
    assert adapter_class("shopify") is Shopify


def test_one_batch_is_one_documented_graphql_call(shop, shopify):
    shop.items = {"SKU-1": {101: 12, 202: 0}, "SKU-2": {101: 3}}
    assert shopify().fetch(batch(["SKU-1", "SKU-2", "SKU-3"], [L1, L2])) == [12, 0, 3, None, None, None]
    (call,) = shop.graphql_calls()
    assert (call.method, call.target) == ("POST", PATH)
    assert call.headers["x-shopify-access-token"] == shop.token
    assert "authorization" not in call.headers
    assert call.headers["content-type"] == "application/json"
    body = call.json()
    assert body["variables"] == {"q": 'sku:"SKU-1" OR sku:"SKU-2" OR sku:"SKU-3"', "after": None}
    assert body["query"] == (
        "query AtpBridgeInventory($q: String!, $after: String) { inventoryItems(first: 25, after: $after, "
        "query: $q) { nodes { sku"
        ' l0: inventoryLevel(locationId: "gid://shopify/Location/101") { location { id } '
        'quantities(names: ["available"]) { name quantity } }'
        ' l1: inventoryLevel(locationId: "gid://shopify/Location/202") { location { id } '
        'quantities(names: ["available"]) { name quantity } } }'
        " pageInfo { hasNextPage endCursor } } }")
    assert shop.refusals == []


def test_the_documented_answer_is_read(shop, shopify):
    documented = orjson.loads((FIXTURES / "inventory_items_response.json").read_bytes())
    shop.respond = lambda erp, seen: (200, documented)
    assert shopify().fetch(batch(["ELEGANT-SHOE-RED-9"], ["gid://shopify/Location/346779380"])) == [14]


@pytest.mark.parametrize("quantity,expected", [("on_hand", 9), ("committed", 2), ("incoming", 0)])
def test_the_quantity_chosen_is_asked_and_read(shop, shopify, quantity, expected):
    shop.items = {"A": {101: {"available": 7, "on_hand": 9, "committed": 2}}}
    assert shopify(quantity=quantity).fetch(batch(["A"], [L1])) == [expected]
    assert f'quantities(names: ["{quantity}"])' in shop.graphql_calls()[0].json()["query"]
    assert shop.refusals == []


@pytest.mark.parametrize("sku", HOSTILE)
def test_a_sku_with_search_or_template_syntax_is_one_quoted_search_value(shop, shopify, sku):
    shop.items = {sku: {101: 5}, "other": {101: 1}}
    assert shopify().fetch(batch([sku, "other"], [L1])) == [5, 1]
    assert shop.refusals == []
    assert parse_search(shop.asked[0]) == [sku, "other"]


def test_the_search_value_escapes_backslash_and_quote():
    wire = Shopify.options_schema().load({"url": "https://x.myshopify.com", "access_token": "t"})["wire"]
    body = orjson.loads(wire.encode(Call(('a"b\\c',), (L1,)), wire.paginator.first())["data"])
    assert body["variables"]["q"] == 'sku:"a\\"b\\\\c"'


def test_items_the_text_search_finds_for_another_sku_are_ignored(shop, shopify):
    shop.items = {"ABC": {101: 4}, "ABC-1": {101: 40}, "abc": {101: 400}}
    assert shopify().fetch(batch(["ABC", "XYZ"], [L1])) == [4, None]


def test_more_items_than_a_page_follow_the_page_info_cursor(shop, shopify):
    shop.items = {"A": {101: 1}, **{f"A{i:02d}": {101: i} for i in range(1, 31)}}
    wanted = ["A", "A07", "A30"]
    assert shopify().fetch(batch(wanted, [L1])) == [1, 7, 30]
    calls = shop.graphql_calls()
    assert len(calls) == 2  # 31 items match "A": a page of 25 and one of 6
    assert calls[0].json()["variables"]["after"] is None
    assert calls[1].json()["variables"]["after"] is not None
    assert shop.refusals == []


def test_a_large_batch_is_cut_into_calls_within_the_single_query_cost(shop, shopify):
    skus = [f"S{i:03d}" for i in range(MAX_SKUS * 2 + 1)]
    locs = [f"gid://shopify/Location/{n}" for n in range(1, MAX_LOCATIONS + 3)]
    shop.items = {s: {n: n for n in range(1, MAX_LOCATIONS + 3)} for s in skus}
    answer = shopify(max_concurrency=1).fetch(batch(skus, locs))
    assert answer == [n for _ in skus for n in range(1, MAX_LOCATIONS + 3)]
    assert len(shop.graphql_calls()) == 3 * 2  # 51 SKUs in 25s, 12 locations in 10s
    assert shop.refusals == []  # every call under Shopify's limit of 1000


def test_location_map_numbers_are_location_gids_and_other_ids_are_not_asked(shop, shopify):
    shop.items = {"A": {101: 6, 202: 8}}
    adapter = shopify()
    adapter.id_maps = IdMaps(locations={"US01": "101", "US02": L2, "US03": "store-3"})
    assert adapter.fetch(batch(["A"], ["US01", "US02", "US03", "US04"])) == [6, 8, None, None]
    query = shop.graphql_calls()[0].json()["query"]
    assert query.count("inventoryLevel(") == 2 and "store-3" not in query
    assert shop.refusals == []


def test_a_wrong_access_token_is_shopifys_401_without_the_token(shop, shopify):
    adapter = shopify(access_token="shpat_wrong_token_42")
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], [L1]))
    assert "HTTP 401" in str(exc.value) and "Invalid API key or access token" in str(exc.value)
    assert "shpat_wrong_token_42" not in str(exc.value)


def test_a_200_with_errors_fails_with_shopifys_message_not_zeros(shop, shopify):
    shop.respond = lambda erp, seen: (200, {"errors": [{"message": "Field 'nope' doesn't exist on type "
                                                                  "'InventoryItem'"}], "data": None})
    with pytest.raises(AdapterError, match="Field 'nope' doesn't exist on type 'InventoryItem'"):
        shopify().fetch(batch(["A"], [L1]))


def test_throttled_is_retried_within_the_deadline(shop, shopify):
    shop.items = {"A": {101: 3}}
    shop.throttle(1)
    adapter = shopify()
    assert adapter.fetch(batch(["A"], [L1])) == [3]
    assert len(shop.graphql_calls()) == 2 and adapter.stats()["retries"] == 1


def test_throttled_past_the_retries_fails_with_shopifys_message(shop, shopify):
    shop.throttle(5)
    adapter = shopify(retries=2)
    with pytest.raises(AdapterError, match="Throttled"):
        adapter.fetch(batch(["A"], [L1]))
    assert len(shop.graphql_calls()) == 3


def test_throttled_is_not_retried_past_the_deadline(shop, shopify):
    shop.throttle(5)
    adapter = shopify(retries=5)
    with pytest.raises(AdapterError, match="Throttled"):
        adapter.fetch(batch(["A"], [L1], seconds=0.04))
    assert len(shop.graphql_calls()) <= 2


def test_an_api_version_the_shop_does_not_have_is_a_404(shop, shopify):
    with pytest.raises(AdapterError, match="HTTP 404.*Not Found"):
        shopify(api_version="2024-10").fetch(batch(["A"], [L1]))
    assert shop.graphql_calls()[0].path == "/admin/api/2024-10/graphql.json"


# -- the engine: extract.retry_on ------------------------------------------------------

def test_rest_extract_retry_on_retries_a_2xx_like_a_503(erp):
    answers = [{"busy": True}, {"rows": [{"p": "A", "l": "L", "q": 5}]}]
    erp.respond = lambda e, seen: (200, answers.pop(0) if len(answers) > 1 else answers[0])
    options = RestAdapter.options_schema().load({
        "url": erp.url, "path": "/x", "method": "GET",
        "extract": {"rows": "rows", "product": "p", "location": "l", "atp": "q", "retry_on": "busy"}})
    adapter = RestAdapter("r", **options)
    try:
        assert adapter.fetch(batch(["A"], ["L"])) == [5]
        assert len(erp.log) == 2
    finally:
        adapter.close()


def test_rest_extract_retry_on_must_be_an_expression():
    with pytest.raises(Exception, match="retry_on"):
        RestAdapter.options_schema().load({"url": "http://h", "path": "/x",
                                           "extract": {"retry_on": "[?"}})


# -- config -------------------------------------------------------------------------------

def shop_config(tmp_path, **options) -> Path:
    adapter = {"name": "shop", "type": "shopify", "url": "https://my-shop.myshopify.com",
               "access_token": "shpat_x", **options}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [adapter]}))
    return path


@pytest.mark.parametrize("options,key,message", [
    ({"url": "https://my-shop.myshopify.com/admin"}, "url", "Must be the shop's URL"),
    ({"api_version": "2025-11"}, "api_version", "Must be a Shopify API version like 2025-10"),
    ({"quantity": "availableToFulfill"}, "quantity", "Must be one of: available, on_hand"),
    ({"access_token": ""}, "access_token", "Must not be empty."),
    ({"body": {}}, "body", "unknown key (check the spelling"),
])
def test_a_bad_key_is_reported_with_file_and_key(tmp_path, options, key, message):
    path = shop_config(tmp_path, **options)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    (problem,) = exc.value.problems
    assert problem.startswith(f"{path}: adapters[0].{key}: {message}")


# -- the example ----------------------------------------------------------------------------

EXAMPLE_ENV = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789",
               "SHOPIFY_URL": "https://my-shop.myshopify.com",
               "SHOPIFY_ACCESS_TOKEN": "shpat_example0123456789abcdef"}


def test_the_example_passes_check_config_with_its_variables():
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=EXAMPLE_ENV)
    assert result.exit_code == 0, result.output
    assert "1. shopify (type=shopify" in result.output
    assert "shpat_example0123456789abcdef" not in result.output


@pytest.mark.slow
def test_the_example_config_serves_shopify_atp_end_to_end(shop, tmp_path):
    config = tmp_path / "shopify"
    shutil.copytree(EXAMPLE, config)
    shop.items = {"1000061": {71234567890: 14, 71234567891: 0}, "10000211": {71234567890: 3}}
    env = {**EXAMPLE_ENV, "SHOPIFY_URL": shop.url, "SHOPIFY_ACCESS_TOKEN": shop.token}
    log = tmp_path / "serve.log"
    with BridgeProcess(config, env=env, output=log) as bridge:
        bridge.wait_ready()
        resp = bridge.post({"products": [{"product_id": "p1", "external_identifier": "1000061"},
                                         {"product_id": "p2", "external_identifier": "10000211"}],
                            "fulfillment_locations": ["US01", "US02"]},
                           headers={"Authorization": "example-newstore-key-0123456789"})
    assert resp.status_code == 200 and "X-ATP-Degraded" not in resp.headers, resp.text
    assert [(a["product_id"], a["fulfillment_location"], a["atp"]) for a in resp.json()["availabilities"]] \
        == [("p1", "US01", 14), ("p1", "US02", 0), ("p2", "US01", 3), ("p2", "US02", 0)]
    assert shop.asked == ['sku:"1000061" OR sku:"10000211"'] and shop.refusals == []
    assert shop.token not in log.read_text()
