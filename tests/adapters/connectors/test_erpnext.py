"""``type: erpnext`` (Frappe's REST API, the Bin doctype, token auth) against its
loopback stand-in (tests/vendors/erpnext.py), through the real REST machinery."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml
from click.testing import CliRunner

from atp_bridge.adapters.engine.connectors.erpnext import PAGE, WAREHOUSE_FILTER_MAX, ERPNext
from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError
from tests.adapters.conftest import batch
from tests.adapters.connectors.conftest import config_problems
from tests.serve import BridgeProcess
from tests.vendors.erpnext import ERPNext as ERPNextStandIn

# ids that would break a hand-made JSON list: quotes, brackets, commas, escapes, control characters
HOSTILE = ["it's", '"', 'a"]], [["name", "like", "%', "]]", "back\\slash", "line\nbreak", "tab\there",
           "a, b", "{{ 7*7 }}", "<b>&amp;</b>", "né/ü?#&=", "100%", " padded "]
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "erpnext"
WH = "Stores - AC"


@pytest.fixture
def site():
    with ERPNextStandIn() as server:
        yield server
    assert server.handler_errors == []  # the stand-in's own bugs fail the test


@pytest.fixture
def erpnext(site, built):
    """``erpnext(**options)`` -> an ERPNext adapter loaded through its schema, closed after the test."""
    def make(**options):
        options = {"url": site.url, "api_key": site.api_key, "api_secret": site.api_secret, **options}
        return built(ERPNext, "erpnext", "erpnext", options)

    return make


def query_of(call) -> dict:
    raw = parse_qs(call.target.partition("?")[2], keep_blank_values=True)
    assert all(len(v) == 1 for v in raw.values()), raw
    return {k: v[0] for k, v in raw.items()}


# -- the documented request ---------------------------------------------------------

def test_one_batch_is_one_bin_listing_with_json_filters_fields_paging_and_the_token(site, erpnext):
    site.stock = {("SKU-1", WH): {"actual_qty": 12.0, "reserved_qty": 2.0},
                  ("SKU-1", "Finished Goods - AC"): {"actual_qty": 40.0, "reserved_qty": 0.0},
                  ("SKU-2", WH): {"actual_qty": 3.0, "reserved_qty": 5.0}}
    answer = erpnext().fetch(batch(["SKU-1", "SKU-2", "SKU-3"], [WH, "Finished Goods - AC"]))
    assert answer == [10.0, 40.0, -2.0, None, None, None]  # the bridge clamps; the adapter reports
    (call,) = site.bin_calls()
    assert (call.method, call.path) == ("GET", "/api/resource/Bin")
    assert call.body == b""
    query = query_of(call)
    assert sorted(query) == ["fields", "filters", "limit_page_length", "limit_start", "order_by"]
    assert json.loads(query["fields"]) == ["item_code", "warehouse", "actual_qty", "reserved_qty"]
    assert json.loads(query["filters"]) == [["item_code", "in", ["SKU-1", "SKU-2", "SKU-3"]],
                                            ["warehouse", "in", [WH, "Finished Goods - AC"]]]
    assert (query["order_by"], query["limit_start"], query["limit_page_length"]) == ("name asc", "0", str(PAGE))
    assert call.headers["authorization"] == f"token {site.api_key}:{site.api_secret}"
    assert call.headers["accept"] == "application/json"
    assert site.refusals == []


@pytest.mark.parametrize("quantity,field,expected", [
    ("projected_qty", "projected_qty", [7.5]),
    ("actual_qty", "actual_qty", [12.0]),
    ("actual_minus_reserved", "actual_qty", [10.0]),
])
def test_quantity_picks_the_bin_field_that_is_the_atp(site, erpnext, quantity, field, expected):
    site.stock = {("SKU-1", WH): {"actual_qty": 12.0, "reserved_qty": 2.0, "projected_qty": 7.5}}
    assert erpnext(quantity=quantity).fetch(batch(["SKU-1"], [WH])) == expected
    fields = site.asked[0]["fields"]
    assert fields[:3] == ["item_code", "warehouse", field]
    assert ("reserved_qty" in fields) == (quantity == "actual_minus_reserved")


def test_bins_of_one_pair_are_added_up_and_a_pair_without_a_bin_is_unknown(site, erpnext):
    site.add_bin("SKU-1", WH, 5.0, 1.0)
    site.add_bin("SKU-1", WH, 7.0, 0.0)  # a second Bin for the same item and warehouse
    site.add_bin("SKU-1", "Elsewhere - AC", 100.0, 0.0)  # not asked: ignored
    assert erpnext().fetch(batch(["SKU-1", "SKU-2"], [WH])) == [11.0, None]


def test_quantities_as_numeric_strings_are_numbers_and_a_null_reserved_subtracts_nothing(site, erpnext):
    site.stock = {("A", "W1"): {"actual_qty": "12.000", "reserved_qty": "2.5"},
                  ("A", "W2"): {"actual_qty": 4, "reserved_qty": None}}
    assert erpnext().fetch(batch(["A"], ["W1", "W2"])) == [9.5, 4]


def test_a_quantity_that_is_no_number_fails_naming_the_field(site, erpnext):
    site.stock = {("A", "W1"): {"actual_qty": "lots"}}
    with pytest.raises(AdapterError, match=r"atp at 'actual_qty' is not a finite number"):
        erpnext().fetch(batch(["A"], ["W1"]))


# -- ids are data -----------------------------------------------------------------------

@pytest.mark.parametrize("hostile", HOSTILE)
def test_an_item_code_with_quotes_brackets_or_escapes_stays_one_json_string(site, erpnext, hostile):
    site.stock = {(hostile, WH): 5.0, ("B", WH): 2.0}
    assert erpnext().fetch(batch([hostile, "B"], [WH])) == [5.0, 2.0]
    assert site.refusals == []
    assert site.asked[0]["items"] == [hostile, "B"] and site.asked[0]["warehouses"] == [WH]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_warehouse_name_with_quotes_brackets_or_escapes_stays_one_json_string(site, erpnext, hostile):
    site.stock = {("A", hostile): 3.0, ("A", WH): 1.0}
    assert erpnext().fetch(batch(["A"], [hostile, WH])) == [3.0, 1.0]
    assert site.refusals == []
    assert site.asked[0]["warehouses"] == [hostile, WH]


def test_mapped_newstore_locations_are_asked_as_warehouse_names(site, tmp_path):
    site.stock = {("SKU-1", WH): 6.0, ("SKU-1", "Finished Goods - AC"): 9.0}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [{
        "name": "erpnext", "type": "erpnext", "url": site.url, "api_key": site.api_key,
        "api_secret": site.api_secret, "quantity": "actual_qty",
        "location_map": {"US01": WH, "US02": WH, "DC01": "Finished Goods - AC"}}]}))
    spec = load_config(path).adapters[0]
    adapter = ERPNext.from_config(spec)
    adapter.id_maps = spec.id_maps  # as the bridge sets it
    try:
        # two NewStore stores on one warehouse both get its Bin; an unmapped id is sent as it is
        assert adapter.fetch(batch(["SKU-1"], ["US01", "US02", "DC01", "ZZ"])) == [6.0, 6.0, 9.0, None]
    finally:
        adapter.close()
    assert site.asked[0]["warehouses"] == [WH, WH, "Finished Goods - AC", "ZZ"]


# -- chunks, pages, the request line ----------------------------------------------------------

def test_a_large_batch_is_cut_into_calls_of_batch_size_pairs(site, erpnext):
    products = [f"SKU-{i:04d}" for i in range(120)]
    site.stock = {(p, wh): float(i % 5 + 1) for i, p in enumerate(products) for wh in ("W1", "W2")}
    answer = erpnext().fetch(batch(products, ["W1", "W2"]))
    assert answer == [float(i % 5 + 1) for i in range(120) for _ in range(2)]
    # 50 pairs a call by default: 25 products with each of the 2 warehouses
    assert sorted(len(a["items"]) for a in site.asked) == [20, 25, 25, 25, 25]
    assert all(a["warehouses"] == ["W1", "W2"] for a in site.asked)


def test_more_warehouses_than_the_filter_takes_are_found_by_item_and_kept_as_asked(site, erpnext):
    warehouses = [f"Shop {i:03d} - AC" for i in range(WAREHOUSE_FILTER_MAX + 10)]
    site.stock = {("SKU-1", wh): float(i) for i, wh in enumerate(warehouses)}
    site.stock[("SKU-1", "Not Asked - AC")] = 99.0
    site.stock[("SKU-2", warehouses[0])] = 1.0
    answer = erpnext().fetch(batch(["SKU-1", "SKU-2"], warehouses))
    assert answer == [float(i) for i in range(len(warehouses))] + [1.0] + [None] * (len(warehouses) - 1)
    assert sorted((a["items"], a["warehouses"]) for a in site.asked) == [(["SKU-1"], None), (["SKU-2"], None)]
    assert all(len(c.target) < 1000 for c in site.bin_calls())


def test_more_bins_than_a_page_are_read_page_by_page_until_a_short_page(site, erpnext):
    warehouses = [f"Shop {i:04d} - AC" for i in range(1100)]  # an item stocked in 1100 warehouses
    site.stock = {("SKU-1", wh): 1.0 for wh in warehouses}
    asked = warehouses[::20]  # 55 of them: the call filters on the item only
    assert erpnext().fetch(batch(["SKU-1"], asked)) == [1.0] * len(asked)
    assert [(a["start"], a["limit"]) for a in site.asked] == [(0, 500), (500, 500), (1000, 500)]


def test_a_last_page_that_is_full_is_followed_by_one_empty_page(site, erpnext):
    warehouses = [f"Shop {i:04d} - AC" for i in range(1000)]
    site.stock = {("SKU-1", wh): 2.0 for wh in warehouses}
    assert erpnext().fetch(batch(["SKU-1"], warehouses[-60:])) == [2.0] * 60
    assert [a["start"] for a in site.asked] == [0, 500, 1000]


def test_the_default_batch_size_keeps_long_ids_under_gunicorns_request_line(site, erpnext):
    products = [f"ITEM-{i:06d}-GREY-XL-LONG" for i in range(400)]  # 25-character item codes
    site.stock = {(products[7], WH): 4.0}
    answer = erpnext().fetch(batch(products, [WH]))
    assert answer[7] == 4.0 and answer.count(None) == 399
    assert len(site.asked) == 8 and site.refusals == []
    assert max(len(c.target) for c in site.bin_calls()) < 4094 - len("GET  HTTP/1.1")


def test_a_batch_size_too_big_for_the_request_line_fails_with_gunicorns_message(site, erpnext):
    products = [f"ITEM-{i:06d}-GREY-XL-LONG" for i in range(400)]
    with pytest.raises(AdapterError) as exc:
        erpnext(batch_size=400).fetch(batch(products, [WH]))
    assert "HTTP 400" in str(exc.value)
    assert "Request Line is too large (" in str(exc.value) and "&gt; 4094)" in str(exc.value)


# -- errors ---------------------------------------------------------------------------------

def test_a_wrong_secret_is_frappes_401_without_the_secret_and_not_retried(site, erpnext):
    adapter = erpnext(api_secret="0000wrong0000secret")
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], [WH]))
    message = str(exc.value)
    assert "/api/resource/Bin: HTTP 401 (check the adapter's auth): " in message
    assert '"exc_type":"AuthenticationError"' in message
    assert "0000wrong0000secret" not in message and "0000wrong0000secret" not in adapter.stats()["last_error"]
    assert len(site.bin_calls()) == 1


def test_an_error_that_quotes_the_key_or_the_secret_on_its_own_shows_stars(site, erpnext):
    # a site's own auth hook may echo what it was given; neither half may reach a log line
    site.respond = lambda erp, seen: (401, {"exc_type": "AuthenticationError", "exception":
                                           f"frappe.exceptions.AuthenticationError: key {erp.api_key} "
                                           f"secret {erp.api_secret} not accepted"})
    adapter = erpnext()
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], [WH]))
    assert "AuthenticationError: key *** secret *** not accepted" in str(exc.value)
    assert site.api_secret not in adapter.stats()["last_error"]


def test_a_key_of_another_site_is_a_401_too(site, erpnext):
    with pytest.raises(AdapterError, match=r"HTTP 401 .*AuthenticationError"):
        erpnext(api_key="ffffffffffffff1").fetch(batch(["A"], [WH]))


def test_a_user_without_the_stock_user_role_gets_frappes_permission_message(site, erpnext):
    site.permitted = False
    with pytest.raises(AdapterError) as exc:
        erpnext().fetch(batch(["A"], [WH]))
    assert "HTTP 403 (check the adapter's auth): " in str(exc.value)
    assert "frappe.exceptions.PermissionError: Insufficient Permission for <strong>Bin</strong>" in str(exc.value)


def test_without_tracebacks_the_permission_message_still_shows(site, erpnext):
    site.permitted, site.tracebacks = False, False  # a production site
    with pytest.raises(AdapterError) as exc:
        erpnext().fetch(batch(["A"], [WH]))
    assert '{"exc_type":"PermissionError","_server_messages":' in str(exc.value)
    assert "Insufficient Permission for <strong>Bin</strong>" in str(exc.value)


def test_a_field_the_site_does_not_have_is_frappes_417_message(site, erpnext):
    site.missing_fields = {"projected_qty"}
    with pytest.raises(AdapterError) as exc:
        erpnext(quantity="projected_qty").fetch(batch(["A"], [WH]))
    assert "HTTP 417: " in str(exc.value)
    assert "frappe.exceptions.DataError: Field not permitted in query: projected_qty" in str(exc.value)


def test_a_429_is_retried_after_retry_after_within_the_deadline(site, erpnext):
    site.stock = {("A", WH): 3.0}
    site.throttle(1, retry_after="1")
    started = time.monotonic()
    assert erpnext().fetch(batch(["A"], [WH], seconds=5)) == [3.0]
    assert time.monotonic() - started >= 1.0 and len(site.bin_calls()) == 2


def test_a_429_whose_retry_after_passes_the_deadline_fails_with_frappes_text(site, erpnext):
    site.throttle(1, retry_after="30")
    with pytest.raises(AdapterError) as exc:
        erpnext().fetch(batch(["A"], [WH], seconds=2))
    assert "HTTP 429 (rate limited; Retry-After did not fit before the deadline): Too Many Requests" \
        in str(exc.value)
    assert len(site.bin_calls()) == 1


def test_an_answer_without_a_data_list_is_an_error_not_unknown_stock(site, erpnext):
    site.respond = lambda erp, seen: (200, {"message": "pong"})  # url pointed at something else
    with pytest.raises(AdapterError, match=r"no data list in the answer \(is url the ERPNext site"):
        erpnext().fetch(batch(["A"], [WH]))


def test_a_web_page_instead_of_json_is_an_error(site, erpnext):
    site.respond = lambda erp, seen: (200, b"<!DOCTYPE html><html><body>Login</body></html>")
    with pytest.raises(AdapterError, match="answer is not JSON"):
        erpnext().fetch(batch(["A"], [WH]))


def test_the_repr_names_the_site_without_credentials(erpnext, site):
    text = repr(erpnext())
    assert text == f"ERPNext('erpnext', {site.url})"
    assert site.api_secret not in text


# -- check-config -------------------------------------------------------------------------

def problems_of(tmp_path, **options) -> list[str]:
    adapter = {"name": "erpnext", "type": "erpnext", "url": "https://erp.example.com",
               "api_key": "4d8c1f0a9b2e7f3", "api_secret": "a91c2e5b7d0f3468", **options}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [{k: v for k, v in adapter.items() if v is not None}]}))
    return [p.split(": ", 1)[1] for p in config_problems(path)]


@pytest.mark.parametrize("options,problem", [
    ({"url": "https://erp.example.com/api/resource/Bin"},
     "adapters[0].url: Must be the site's base URL like https://erp.example.com (no /api/... path"),
    ({"url": "erp.example.com"}, "adapters[0].url: Must be an http:// or https:// URL with a host."),
    ({"api_key": "key:with-colon"}, "adapters[0].api_key: Must be the user's API Key as ERPNext shows it"),
    ({"api_secret": "two words"}, "adapters[0].api_secret: Must be the user's API Secret as ERPNext shows it"),
    ({"api_secret": None}, "adapters[0].api_secret: Missing data for required field."),
    ({"quantity": "free_qty"}, "adapters[0].quantity: Must be one of: actual_minus_reserved, projected_qty, "
                               "actual_qty (actual_minus_reserved: actual_qty - reserved_qty)."),
    ({"auth": {"type": "bearer", "token": "x"}}, "adapters[0].auth: unknown key"),  # the preset sets auth
])
def test_a_bad_key_is_reported_with_its_name(tmp_path, options, problem):
    assert [p for p in problems_of(tmp_path, **options) if p.startswith(problem)], \
        problems_of(tmp_path, **options)


def test_a_secret_with_a_colon_is_reported_without_its_value(tmp_path):
    (problem,) = problems_of(tmp_path, api_secret="s3cr3t:value")
    assert "s3cr3t" not in problem


def test_batch_size_and_the_other_rest_keys_still_apply(tmp_path):
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [{
        "name": "erpnext", "type": "erpnext", "url": "https://erp.example.com/", "api_key": "k1",
        "api_secret": "s1", "batch_size": 20, "timeout_ms": 900, "headers": {"X-Trace": "t"}}]}))
    options = load_config(path).adapters[0].options
    assert (options["batch_size"], options["timeout_ms"], options["url"]) == (20, 900, "https://erp.example.com")


# -- the example ---------------------------------------------------------------------------

EXAMPLE_ENV = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789",
               "ERPNEXT_API_KEY": "4d8c1f0a9b2e7f3", "ERPNEXT_API_SECRET": "a91c2e5b7d0f3468"}


def test_the_example_passes_check_config_with_its_variables_and_shows_no_secret():
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=EXAMPLE_ENV)
    assert result.exit_code == 0, result.output
    assert "a91c2e5b7d0f3468" not in result.output and "4d8c1f0a9b2e7f3" not in result.output


@pytest.mark.slow
def test_the_example_config_serves_erpnext_atp_end_to_end(site, tmp_path):
    config = tmp_path / "erpnext"
    shutil.copytree(EXAMPLE, config)
    site.stock = {("1000061", "Stores - AC"): {"actual_qty": 14.0, "reserved_qty": 4.0},
                  ("10000211", "Finished Goods - AC"): {"actual_qty": 3.0, "reserved_qty": 0.0}}
    env = {**EXAMPLE_ENV, "ERPNEXT_URL": site.url}
    log = tmp_path / "serve.log"
    with BridgeProcess(config, env=env, output=log) as bridge:
        bridge.wait_ready()
        resp = bridge.post({"products": [{"product_id": "p1", "external_identifier": "1000061"},
                                         {"product_id": "p2", "external_identifier": "10000211"}],
                            "fulfillment_locations": ["US01", "US02"]},
                           headers={"Authorization": EXAMPLE_ENV["NEWSTORE_API_KEY"]})
        assert resp.status_code == 200 and "X-ATP-Degraded" not in resp.headers, resp.text
        assert [(a["product_id"], a["fulfillment_location"], a["atp"]) for a in resp.json()["availabilities"]] \
            == [("p1", "US01", 10), ("p1", "US02", 0), ("p2", "US01", 0), ("p2", "US02", 3)]
        site.api_secret = "rotated-secret-0001"  # the key the bridge holds is no longer valid
        degraded = bridge.post({"products": [{"product_id": "p1", "external_identifier": "1000061"}],
                                "fulfillment_locations": ["US01"]},
                               headers={"Authorization": EXAMPLE_ENV["NEWSTORE_API_KEY"]})
        assert degraded.headers.get("X-ATP-Degraded") == "error:erpnext"
        assert [a["atp"] for a in degraded.json()["availabilities"]] == [0]
    assert site.asked[0]["warehouses"] == ["Stores - AC", "Finished Goods - AC"]  # the example's location_map
    assert site.asked[0]["items"] == ["1000061", "10000211"]
    output = log.read_text()
    assert "HTTP 401" in output and "AuthenticationError" in output
    assert EXAMPLE_ENV["ERPNEXT_API_SECRET"] not in output and EXAMPLE_ENV["ERPNEXT_API_KEY"] not in output
