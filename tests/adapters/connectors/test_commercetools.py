"""``type: commercetools`` (Query InventoryEntries with predicate input variables, OAuth 2.0
client credentials by HTTP Basic) against its loopback stand-in
(tests/vendors/commercetools.py), through the real REST machinery."""
from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import yaml
from click.testing import CliRunner

from atp_bridge.adapters.engine.connectors.commercetools import Commercetools, jmespath_literal
from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.config_types import AdapterSpec
from atp_bridge.errors import AdapterError
from tests.adapters.conftest import batch
from tests.adapters.connectors.conftest import config_problems
from tests.serve import BridgeProcess
from tests.vendors.commercetools import TOKEN_PATH, Predicate, PredicateError
from tests.vendors.commercetools import Commercetools as CommercetoolsStandIn

HOSTILE = ['it\'s', 'say "hi"', "back\\slash", "trail\\", "a&b=c", "100%", "plus+sign", "sp ace", "né/ü?#",
           'x") or sku is defined or (sku = "', ":skus", "line\nbreak", "tab\there", "ctl\x01", "`tick`"]
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "commercetools"
CH1, CH2 = "b2a4f6e8-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "7d9e1f2a-3b4c-4d5e-9f6a-7b8c9d0e1f2a"
WHERE_CHANNELS = "sku in :skus and supplyChannel(id in :channels)"


@pytest.fixture
def ct():
    with CommercetoolsStandIn() as server:
        yield server


@pytest.fixture
def commercetools(ct, built):
    """``commercetools(**options)`` -> a Commercetools adapter loaded through its
    schema, pointed at the stand-in for both API and auth; closed after the test."""
    def make(**options):
        options = {"url": ct.url, "auth_url": ct.url, "project_key": ct.project_key,
                   "client_id": ct.client_id, "client_secret": ct.client_secret, **options}
        return built(Commercetools, "commercetools", "ct", options)

    return make


def query_of(seen) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(seen.target).query, keep_blank_values=True, strict_parsing=True)


# -- the documented request ---------------------------------------------------------

def test_one_batch_is_one_documented_inventory_query_after_one_basic_auth_token_request(ct, commercetools):
    ct.add("SKU-1", CH1, 12)
    ct.add("SKU-1", CH2, 0)
    ct.add("SKU-2", CH1, 3)
    ct.add("SKU-2", "another-channel", 99)
    answer = commercetools().fetch(batch(["SKU-1", "SKU-2", "SKU-3"], [CH1, CH2]))
    assert answer == [12, 0, 3, None, None, None]
    (token_call,) = ct.requests(TOKEN_PATH)
    assert token_call.method == "POST"
    assert token_call.headers["authorization"] == "Basic " + base64.b64encode(
        f"{ct.client_id}:{ct.client_secret}".encode()).decode()
    assert token_call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(token_call.body.decode()) == [("grant_type", "client_credentials"),
                                                   ("scope", "view_products:atp-demo")]
    (call,) = ct.inventory_calls()
    assert (call.method, call.path, call.body) == ("GET", "/atp-demo/inventory", b"")
    assert call.headers["authorization"] == f"Bearer {next(iter(ct.tokens))}"
    assert call.headers["accept"] == "application/json"
    assert sorted(query_of(call)) == sorted([
        ("var.skus", "SKU-1"), ("var.skus", "SKU-2"), ("var.skus", "SKU-3"),
        ("var.channels", CH1), ("var.channels", CH2),
        ("where", WHERE_CHANNELS), ("sort", "id asc"), ("limit", "500"), ("offset", "0")])
    assert ct.refusals == []


def test_quantity_on_stock_instead_of_the_available_quantity(ct, commercetools):
    ct.add("A", CH1, available=4, on_stock=9)
    assert commercetools().fetch(batch(["A"], [CH1])) == [4]
    assert commercetools(quantity="quantityOnStock").fetch(batch(["A"], [CH1])) == [9]


def test_quantities_are_reported_as_commercetools_counts_them(ct, commercetools):
    ct.add("A", CH1, 0)
    ct.add("B", CH1, -3)            # oversold: the bridge clamps, the adapter reports
    ct.add("C", CH1, 9_007_199_254)
    assert commercetools().fetch(batch(["A", "B", "C"], [CH1])) == [0, -3, 9_007_199_254]


def test_the_default_scope_is_view_products_of_the_project_and_a_given_one_is_sent_as_it_is(ct, commercetools):
    ct.clients[ct.client_id][1].add("view_orders:atp-demo")
    ct.add("A", CH1, 1)
    assert commercetools(scope="view_products:atp-demo view_orders:atp-demo").fetch(batch(["A"], [CH1])) == [1]
    assert dict(parse_qsl(ct.requests(TOKEN_PATH)[0].body.decode()))["scope"] == \
        "view_products:atp-demo view_orders:atp-demo"


def test_ids_asked_twice_are_sent_once(ct, commercetools):
    ct.add("A", CH1, 2)
    assert commercetools().fetch(batch(["A", "A"], [CH1, CH1])) == [2, 2, 2, 2]
    assert ct.asked[0]["vars"] == {"skus": ["A"], "channels": [CH1]}


# -- ids are data -------------------------------------------------------------------------

@pytest.mark.parametrize("sku", HOSTILE)
def test_a_sku_with_quotes_or_predicate_syntax_stays_one_input_variable(ct, commercetools, sku):
    ct.add(sku, CH1, 5)
    ct.add("B", CH1, 2)
    assert commercetools().fetch(batch([sku, "B"], [CH1])) == [5, 2]
    assert ct.asked == [{"where": WHERE_CHANNELS, "vars": {"skus": [sku, "B"], "channels": [CH1]},
                         "limit": 500, "offset": 0, "sort": "id asc"}]


@pytest.mark.parametrize("channel", HOSTILE[:6])
def test_a_channel_id_with_special_characters_stays_one_input_variable(ct, commercetools, channel):
    ct.add("A", channel, 7)
    ct.add("A", CH1, 1)
    assert commercetools().fetch(batch(["A"], [channel, CH1])) == [7, 1]
    assert ct.asked[0]["vars"]["channels"] == [channel, CH1]


def test_a_project_key_is_one_path_segment(ct, commercetools):
    with CommercetoolsStandIn(project_key="shop/eu%1") as other:
        other.add("A", CH1, 3)
        adapter = Commercetools.from_config(AdapterSpec(name="ct", type="commercetools", options=(
            Commercetools.options_schema().load({"url": other.url, "auth_url": other.url, "project_key": "shop/eu%1",
                                                 "client_id": other.client_id,
                                                 "client_secret": other.client_secret}))))
        try:
            assert adapter.fetch(batch(["A"], [CH1])) == [3]
        finally:
            adapter.close()
        assert other.inventory_calls()[0].target.startswith("/shop%2Feu%251/inventory?")


# -- entries without a supply channel ------------------------------------------------------

def test_entries_without_a_channel_answer_for_the_no_channel_location_when_it_is_asked(ct, commercetools):
    ct.add("A", None, 7)
    ct.add("A", CH1, 2)
    ct.add("B", None, 4)
    adapter = commercetools(no_channel_location="WEB")
    assert adapter.fetch(batch(["A", "B"], [CH1, "WEB"])) == [2, 7, None, 4]
    assert ct.asked[0]["where"] == \
        "sku in :skus and (supplyChannel(id in :channels) or supplyChannel is not defined)"
    assert ct.asked[0]["vars"] == {"skus": ["A", "B"], "channels": [CH1]}
    assert adapter.fetch(batch(["A"], ["WEB"])) == [7]
    assert ct.asked[1]["where"] == "sku in :skus and supplyChannel is not defined"
    assert ct.asked[1]["vars"] == {"skus": ["A"]}
    assert adapter.fetch(batch(["A"], [CH1])) == [2]  # not asked for: not in the query
    assert ct.asked[2]["where"] == WHERE_CHANNELS


def test_without_a_no_channel_location_entries_without_a_channel_are_ignored(ct, commercetools):
    ct.add("A", None, 7)
    ct.add("A", CH1, 2)
    adapter = commercetools()
    assert adapter.fetch(batch(["A"], [CH1, "WEB"])) == [2, None]
    assert ct.asked[0]["vars"]["channels"] == [CH1, "WEB"]
    # and should an answer carry one anyway, it is no row (not an error)
    doc = {"results": [{"sku": "A", "availableQuantity": 7}, {"sku": "A", "availableQuantity": 2,
                                                                "supplyChannel": {"typeId": "channel", "id": CH1}}]}
    assert adapter.wire.extractor.extract(doc) == {("A", CH1): 2}


@pytest.mark.parametrize("location", ["WEB", 'say "hi"', "it's", "back\\", "a`b`", "\\`", "ü"])
def test_any_no_channel_location_is_a_literal_of_the_extraction(ct, commercetools, location):
    ct.add("A", None, 6)
    assert commercetools(no_channel_location=location).fetch(batch(["A"], [location])) == [6]
    assert jmespath_literal(location).count("`") == 2


def test_a_mapped_newstore_location_asks_for_its_supply_channel_and_answers_under_its_own_id(ct, tmp_path):
    ct.add("1000061", CH1, 14)
    ct.add("1000061", None, 5)
    adapter_yaml = {"name": "ct", "type": "commercetools", "url": ct.url, "auth_url": ct.url,
                    "project_key": ct.project_key, "client_id": ct.client_id, "client_secret": ct.client_secret,
                    "location_map": {"US01": CH1, "US02": CH1}, "no_channel_location": "WEB"}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [adapter_yaml]}))
    spec = load_config(path).adapters[0]
    adapter = Commercetools.from_config(spec)
    adapter.id_maps = spec.id_maps  # as the bridge does
    try:
        assert adapter.fetch(batch(["1000061"], ["US01", "WEB", "US02"])) == [14, 5, 14]
    finally:
        adapter.close()
    assert ct.asked[0]["vars"] == {"skus": ["1000061"], "channels": [CH1]}


# -- paging, batches, token, errors ----------------------------------------------------------

def test_more_entries_than_a_page_are_read_page_by_page(ct, commercetools):
    skus = [f"P{i:04d}" for i in range(1100)]
    for i, sku in enumerate(skus):
        ct.add(sku, CH1, i % 7 + 1)
    answer = commercetools(batch_size=5000).fetch(batch(skus, [CH1]))
    assert answer == [i % 7 + 1 for i in range(1100)]
    assert [(a["limit"], a["offset"]) for a in ct.asked] == [(500, 0), (500, 500), (500, 1000)]
    assert len(ct.requests(TOKEN_PATH)) == 1


def test_a_large_batch_is_cut_into_calls_of_150_pairs(ct, commercetools):
    skus = [f"P{i:03d}" for i in range(200)]
    for sku in skus:
        ct.add(sku, CH1, 1)
        ct.add(sku, CH2, 2)
    assert commercetools().fetch(batch(skus, [CH1, CH2])) == [1, 2] * 200
    assert sorted(len(a["vars"]["skus"]) for a in ct.asked) == [50, 75, 75]
    assert max(len(c.target) for c in ct.inventory_calls()) < 2500


def test_the_token_is_reused_and_fetched_again_once_after_a_401(ct, commercetools):
    ct.add("A", CH1, 2)
    adapter = commercetools()
    assert adapter.fetch(batch(["A"], [CH1])) == [2]
    assert adapter.fetch(batch(["A"], [CH1])) == [2]
    assert len(ct.requests(TOKEN_PATH)) == 1
    first = set(ct.tokens)
    ct.revoke_tokens()  # commercetools forgot the token early
    assert adapter.fetch(batch(["A"], [CH1])) == [2]
    assert len(ct.requests(TOKEN_PATH)) == 2
    assert [c.headers["authorization"][7:] in first for c in ct.inventory_calls()] == [True, True, True, False]


def test_a_token_that_keeps_failing_is_commercetools_invalid_token_message(ct, commercetools):
    ct.refuse_tokens = True
    with pytest.raises(AdapterError, match=r"/atp-demo/inventory: HTTP 401 \(check the adapter's auth\): "
                                           r"invalid_token$"):
        commercetools().fetch(batch(["A"], [CH1]))
    assert len(ct.requests(TOKEN_PATH)) == 2 and len(ct.inventory_calls()) == 2


def test_a_wrong_client_secret_is_the_auth_services_answer_without_the_secret(ct, commercetools):
    adapter = commercetools(client_secret="not-the-secret-0001")
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], [CH1]))
    message = str(exc.value)
    assert "auth: token endpoint answered HTTP 401: " in message
    assert "Please provide valid client credentials using HTTP Basic Authentication." in message
    assert "not-the-secret-0001" not in message and "not-the-secret-0001" not in adapter.stats()["last_error"]
    assert ct.refusals == ["client credentials"] and ct.inventory_calls() == []


def test_a_scope_the_api_client_lacks_is_refused_by_the_auth_service(ct, commercetools):
    with pytest.raises(AdapterError, match=r"token endpoint answered HTTP 400: .*invalid_scope"):
        commercetools(scope="manage_orders:atp-demo").fetch(batch(["A"], [CH1]))
    assert ct.refusals == ["scope 'manage_orders:atp-demo'"]


def test_a_token_without_view_products_surfaces_commercetools_insufficient_scope(ct, commercetools):
    ct.clients[ct.client_id][1].add("view_orders:atp-demo")
    with pytest.raises(AdapterError, match=r"HTTP 403 \(check the adapter's auth\): Insufficient scope\. One of "
                                           r"the following scopes is missing: view_products"):
        commercetools(scope="view_orders:atp-demo").fetch(batch(["A"], [CH1]))


def test_a_429_is_retried_after_retry_after_within_the_deadline(ct, commercetools):
    ct.add("A", CH1, 3)
    ct.throttle(1, retry_after="1")
    started = time.monotonic()
    assert commercetools().fetch(batch(["A"], [CH1], seconds=5)) == [3]
    assert time.monotonic() - started >= 1.0 and len(ct.inventory_calls()) == 2


def test_a_429_whose_retry_after_passes_the_deadline_fails_with_commercetools_message(ct, commercetools):
    ct.throttle(1, retry_after="30")
    with pytest.raises(AdapterError, match=r"HTTP 429 \(rate limited; Retry-After did not fit before the "
                                           r"deadline\): Too many requests\. Please retry later\."):
        commercetools().fetch(batch(["A"], [CH1], seconds=2))
    assert len(ct.inventory_calls()) == 1


# -- the stand-in is as strict as the documented grammar ---------------------------------------

def test_the_stand_in_refuses_an_unescaped_quote_as_commercetools_does_and_reads_escapes(ct):
    ct.add('say "hi"', CH1, 3)
    token = requests.post(ct.url + TOKEN_PATH, data={"grant_type": "client_credentials"},
                          auth=(ct.client_id, ct.client_secret)).json()["access_token"]

    def ask(where):
        return requests.get(ct.url + ct.inventory_path, params={"where": where},
                            headers={"Authorization": f"Bearer {token}"})
    bad = ask('sku = "say "hi""')
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "InvalidInput"
    assert bad.json()["message"].startswith("Malformed parameter: where: Syntax error while parsing 'where'. "
                                            "Invalid input 'h'")
    assert [e["sku"] for e in ask(r'sku = "say \"hi\""').json()["results"]] == ['say "hi"']
    assert [e["sku"] for e in ask(r'sku = "say \u0022hi\u0022"').json()["results"]] == ['say "hi"']
    assert ask("sku in :skus").json()["message"] == \
        "Malformed parameter: where: Missing value for input variable 'skus'."
    assert ask('quantity = 3').json()["message"] == "Malformed parameter: where: The field 'quantity' does not exist."


@pytest.mark.parametrize("text", ['sku = "a\x01"', 'sku = "a\\x"', 'sku in ("a" "b")', "sku ="])
def test_the_stand_ins_predicate_grammar_refuses_what_the_spec_does_not_allow(text):
    with pytest.raises(PredicateError):
        Predicate(text)


# -- check-config ----------------------------------------------------------------------------

def ct_config(tmp_path, **options) -> Path:
    adapter = {"name": "ct", "type": "commercetools", "url": "https://api.europe-west1.gcp.commercetools.com",
               "auth_url": "https://auth.europe-west1.gcp.commercetools.com", "project_key": "atp-demo",
               "client_id": "c", "client_secret": "s", **options}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [adapter]}))
    return path


@pytest.mark.parametrize("key,value,problem", [
    ("url", "https://api.europe-west1.gcp.commercetools.com/atp-demo", "Must be the host only, like "
     "https://api.europe-west1.gcp.commercetools.com (the project key is its own key)."),
    ("auth_url", "https://auth.europe-west1.gcp.commercetools.com/oauth/token", "Must be the host only, like "
     "https://auth.europe-west1.gcp.commercetools.com (/oauth/token is added)."),
    ("url", "api.europe-west1.gcp.commercetools.com", "Must be an https:// URL like "
     "https://api.europe-west1.gcp.commercetools.com."),
    ("quantity", "stock", "Must be availableQuantity (on stock minus reserved) or quantityOnStock."),
    ("project_key", "", "Must not be empty or hold spaces (it is the project's key, like my-shop-42)."),
    ("project_key", "my shop", "Must not be empty or hold spaces (it is the project's key, like my-shop-42)."),
])
def test_a_bad_key_is_reported_with_file_and_key(tmp_path, key, value, problem):
    path = ct_config(tmp_path, **{key: value})
    assert config_problems(path) == [f"{path}: adapters[0].{key}: {problem}"]


def test_a_missing_key_is_reported_with_file_and_key(tmp_path):
    path = ct_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["adapters"][0]["client_secret"]
    path.write_text(yaml.safe_dump(raw))
    assert config_problems(path) == [f"{path}: adapters[0].client_secret: Missing data for required field."]


def test_a_no_channel_location_that_location_map_changes_is_reported(tmp_path):
    path = ct_config(tmp_path, no_channel_location="WEB", location_map={"WEB": "online", "US01": CH1})
    (problem,) = config_problems(path)
    assert problem.startswith(f"{path}: adapters[0].no_channel_location: is a key of location_map too")
    assert load_config(ct_config(tmp_path, no_channel_location="online",
                                 location_map={"WEB": "online"})).adapters[0].name == "ct"


def test_the_engine_options_the_preset_gives(tmp_path):
    options = load_config(ct_config(tmp_path, batch_size=60, timeout_ms=900)).adapters[0].options
    assert (options["batch_size"], options["timeout_ms"], options["method"]) == (60, 900, "GET")
    assert options["auth"].token_url == "https://auth.europe-west1.gcp.commercetools.com/oauth/token"
    assert (options["auth"].client_auth, options["auth"].scope) == ("basic", "view_products:atp-demo")
    assert load_config(ct_config(tmp_path)).adapters[0].options["batch_size"] == 150


# -- the example -------------------------------------------------------------------------------

EXAMPLE_ENV = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789", "CT_CLIENT_ID": "ct-client-0001",
               "CT_CLIENT_SECRET": "ct-secret-0001"}


def test_the_example_passes_check_config_with_its_variables_without_showing_them():
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=EXAMPLE_ENV)
    assert result.exit_code == 0, result.output
    assert "ct-secret-0001" not in result.output and "example-newstore-key" not in result.output


@pytest.mark.slow
def test_the_example_config_serves_commercetools_atp_end_to_end(ct, tmp_path):
    config = tmp_path / "commercetools"
    shutil.copytree(EXAMPLE, config)
    ct.add("1000061", CH1, 14)             # US01
    ct.add("1000061", CH2, 0)              # DC01
    ct.add("1000061", None, 5)             # WEB: no supply channel
    ct.add("10000211", CH2, 30)
    env = {**EXAMPLE_ENV, "CT_API_URL": ct.url, "CT_AUTH_URL": ct.url, "CT_PROJECT_KEY": ct.project_key}
    log = tmp_path / "serve.log"
    with BridgeProcess(config, env=env, output=log) as bridge:
        bridge.wait_ready()
        resp = bridge.post({"products": [{"product_id": "p1", "external_identifier": "1000061"},
                                         {"product_id": "p2", "external_identifier": "10000211"}],
                            "fulfillment_locations": ["US01", "DC01", "WEB"]},
                           headers={"Authorization": "example-newstore-key-0123456789"})
    assert resp.status_code == 200 and "X-ATP-Degraded" not in resp.headers, resp.text
    assert [(a["product_id"], a["fulfillment_location"], a["atp"]) for a in resp.json()["availabilities"]] \
        == [("p1", "US01", 14), ("p1", "DC01", 0), ("p1", "WEB", 5),
            ("p2", "US01", 0), ("p2", "DC01", 30), ("p2", "WEB", 0)]
    assert ct.asked[0]["vars"] == {"skus": ["1000061", "10000211"], "channels": [CH1, CH2]}
    output = log.read_text()
    for secret in [*ct.tokens, "ct-secret-0001"]:
        assert secret not in output
