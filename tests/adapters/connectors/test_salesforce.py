"""``type: salesforce-oci`` (Omnichannel Inventory Get Availability over the Connect
REST API, OAuth 2.0 client credentials) against its loopback stand-in
(tests/vendors/salesforce.py), through the real REST machinery."""
from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from atp_bridge.adapters import adapter_class
from atp_bridge.adapters.engine.connectors.salesforce import AVAILABILITY_PATH, OmnichannelInventory
from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError
from tests.adapters.conftest import batch
from tests.adapters.connectors.conftest import config_problems
from tests.serve import BridgeProcess
from tests.vendors.salesforce import FIXTURES
from tests.vendors.salesforce import OmnichannelInventory as OciStandIn

HOSTILE = ["it's", 'say "hi"', "a, b", "100%", "line\nbreak", "{{ 7*7 }}", "{% raw %}", "back\\slash",
           "né/ü?#&", "]}", "null"]
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "salesforce-oci"
PATH = "/services/data/v66.0" + AVAILABILITY_PATH


@pytest.fixture
def oci():
    with OciStandIn() as server:
        yield server


@pytest.fixture
def salesforce(oci, built):
    """``salesforce(**options)`` -> the connector loaded through its schema, closed after the test."""
    def make(**options):
        options = {"url": oci.url, "client_id": oci.client[0], "client_secret": oci.client[1], **options}
        return built(OmnichannelInventory, "salesforce-oci", "oci", options)

    return make


def grid(body: dict) -> Counter:
    return Counter((s, loc) for s in body["stockKeepingUnits"] for loc in body["locationIdentifiers"])


# -- the documented request ------------------------------------------------------

def test_the_type_name_is_registered():
    assert adapter_class("salesforce-oci") is OmnichannelInventory


def test_one_batch_is_one_documented_get_availability_call_after_one_token_request(oci, salesforce):
    oci.stock = {("SKU-1", "WH-EAST"): 12, ("SKU-1", "STORE-042"): 0, ("SKU-2", "WH-EAST"): 3.5}
    answer = salesforce().fetch(batch(["SKU-1", "SKU-2", "SKU-3"], ["WH-EAST", "STORE-042"]))
    assert answer == [12, 0, 3.5, None, None, None]
    (token_call,) = oci.token_calls()
    assert token_call.method == "POST"
    assert token_call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token_call.form() == {"grant_type": "client_credentials", "client_id": oci.client[0],
                                 "client_secret": oci.client[1]}
    (call,) = oci.availability_calls()
    assert (call.method, call.target) == ("POST", PATH)
    assert call.headers["content-type"] == "application/json"
    assert call.headers["accept"] == "application/json"
    assert call.headers["authorization"] == f"Bearer {next(iter(oci.tokens))}"
    assert call.json() == {"stockKeepingUnits": ["SKU-1", "SKU-2", "SKU-3"],
                           "locationIdentifiers": ["WH-EAST", "STORE-042"], "useCache": True}
    assert oci.refusals == []


@pytest.mark.parametrize("quantity,expected", [(None, 40), ("availableToFulfill", 40),
                                               ("availableToOrder", 52), ("onHand", 45)])
def test_the_documented_answer_is_read_at_the_quantity_chosen(oci, salesforce, quantity, expected):
    documented = orjson.loads((FIXTURES / "get_availability_response.json").read_bytes())
    oci.respond = lambda erp, seen: (200, documented) if seen.path == PATH else OciStandIn._respond(erp, seen)
    adapter = salesforce(**({"quantity": quantity} if quantity else {}))
    assert adapter.fetch(batch(["TSHIRT-BLK-M", "TSHIRT-BLK-L"], ["WH-EAST", "STORE-042"])) == \
        [expected, None, None, None]


def test_use_cache_false_and_an_older_api_version_are_sent_as_configured(oci, salesforce):
    oci.stock = {("A", "L1"): 2}
    assert salesforce(use_cache=False, api_version=62.0).fetch(batch(["A"], ["L1"])) == [2]
    (call,) = oci.availability_calls()
    assert call.path == "/services/data/v62.0" + AVAILABILITY_PATH
    assert call.json()["useCache"] is False


def test_location_groups_ask_by_group_and_read_the_groups_answer(oci, salesforce):
    oci.stock = {("A", "ONLINE"): 30, ("B", "ONLINE"): 4, ("A", "STORES-EAST"): 9}
    answer = salesforce(location_groups=True).fetch(batch(["A", "B"], ["ONLINE", "STORES-EAST"]))
    assert answer == [30, 9, 4, None]
    assert oci.asked == [{"stockKeepingUnits": ["A", "B"], "locationGroupIdentifiers": ["ONLINE", "STORES-EAST"],
                          "useCache": True}]


def test_quantities_are_doubles_and_numeric_strings_are_numbers_too(oci, salesforce):
    oci.stock = {("A", "L1"): 7, ("A", "L2"): 12.5, ("A", "L3"): -2, ("A", "L4"): 0}
    adapter = salesforce()
    assert adapter.fetch(batch(["A"], ["L1", "L2", "L3", "L4"])) == [7, 12.5, -2, 0]  # the bridge clamps
    oci.quantities_as_strings = True
    assert adapter.fetch(batch(["A"], ["L1", "L2", "L3", "L4"])) == [7, 12.5, -2, 0]


@pytest.mark.parametrize("body,status,code", [
    ({"stockKeepingUnits": ["A"], "locationIdentifiers": ["L1"], "locations": ["L1"]}, 400, "JSON_PARSER_ERROR"),
    ({"stockKeepingUnits": ["A"], "locationIdentifiers": ["L1"], "useCache": "yes"}, 400, "JSON_PARSER_ERROR"),
    ({"stockKeepingUnits": ["A"], "locationIdentifiers": ["L1"], "locationGroupIdentifiers": ["G"]}, 400,
     "INVALID_API_INPUT"),
    ({"stockKeepingUnit": "A", "locationIdentifiers": ["L1"]}, 400, "INVALID_API_INPUT"),
    ({"stockKeepingUnits": ["A"], "locationGroupIdentifier": "G"}, 400, "INVALID_API_INPUT"),
    ({"stockKeepingUnits": ["A"]}, 400, "INVALID_API_INPUT"),
    ({"stockKeepingUnits": [], "locationIdentifiers": ["L1"]}, 400, "INVALID_API_INPUT"),
    ({"stockKeepingUnits": ["A"] * 101, "locationIdentifiers": ["L1"]}, 400, "INVALID_API_INPUT"),
    ({"stockKeepingUnits": ["A"], "locationIdentifiers": [7]}, 400, "INVALID_API_INPUT"),
    ({"stockKeepingUnit": "A", "locationGroupIdentifier": "G"}, 200, None),
])
def test_the_stand_in_refuses_what_the_documented_input_does_not_allow(oci, body, status, code):
    import requests
    token = requests.post(oci.url + "/services/oauth2/token", timeout=5, data={
        "grant_type": "client_credentials", "client_id": oci.client[0], "client_secret": oci.client[1]}).json()
    assert set(token) == {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}
    resp = requests.post(oci.url + PATH, json=body, timeout=5,
                         headers={"Authorization": f"Bearer {token['access_token']}"})
    assert resp.status_code == status, resp.text
    if code:
        assert [e["errorCode"] for e in resp.json()] == [code]
    assert requests.post(oci.url + PATH, json=body, timeout=5).status_code == 401
    assert requests.post(oci.url + PATH.replace("v66.0", "v50.0"), json=body, timeout=5,
                         headers={"Authorization": f"Bearer {token['access_token']}"}).status_code == 404


# -- ids are data, the caps, mapped ids ------------------------------------------------

@pytest.mark.parametrize("sku", HOSTILE)
def test_an_id_with_quotes_or_template_syntax_is_sent_as_it_is(oci, salesforce, sku):
    location = f"LOC {sku}"
    oci.stock = {(sku, location): 5, ("B", location): 2}
    assert salesforce().fetch(batch([sku, "B"], [location])) == [5, 2]
    assert oci.asked == [{"stockKeepingUnits": [sku, "B"], "locationIdentifiers": [location], "useCache": True}]


def test_more_than_100_skus_or_locations_are_cut_into_calls_of_at_most_100_each(oci, salesforce):
    skus, locations = [f"S{i:03d}" for i in range(205)], [f"L{i:03d}" for i in range(101)]
    oci.stock = {(s, loc): (i + j) % 5 for i, s in enumerate(skus) for j, loc in enumerate(locations)
                 if (i * 7 + j) % 13 == 0}
    adapter = salesforce(max_concurrency=4)
    answer = adapter.fetch(batch(skus, locations, seconds=20))
    assert answer == [oci.stock.get((s, loc)) for s in skus for loc in locations]
    assert sorted((len(b["stockKeepingUnits"]), len(b["locationIdentifiers"])) for b in oci.asked) == \
        [(5, 1), (5, 100), (100, 1), (100, 1), (100, 100), (100, 100)]
    assert sum((grid(b) for b in oci.asked), Counter()) == Counter({(s, loc): 1 for s in skus for loc in locations})
    assert len(oci.token_calls()) == 1 and oci.refusals == []


def test_without_the_caps_salesforce_refuses_the_call_and_says_why(oci, salesforce):
    adapter = salesforce()
    adapter.wire = adapter.wire.capped()  # what the connector would send without them
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch([f"S{i}" for i in range(101)], ["L1"]))
    assert (f"POST {oci.url}{PATH}: HTTP 400: " + '[{"errorCode":"INVALID_API_INPUT","message":'
            '"stockKeepingUnits: a list of 1 to 100 values is required"}]') in str(exc.value)


def test_a_smaller_batch_size_makes_smaller_calls(oci, salesforce):
    oci.stock = {("P3", "L7"): 1}
    answer = salesforce(batch_size=50).fetch(batch([f"P{i}" for i in range(10)], [f"L{i}" for i in range(20)]))
    assert answer.count(1) == 1 and len(answer) == 200
    assert [(len(b["stockKeepingUnits"]), len(b["locationIdentifiers"])) for b in oci.asked] == [(2, 20)] * 5


def test_ids_that_two_newstore_ids_map_to_are_asked_once_and_answered_for_both(oci, tmp_path):
    oci.stock = {("SKU-1", "WH-EAST"): 8, ("sku-1", "WH-EAST"): 1}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [{
        "name": "oci", "type": "salesforce-oci", "url": oci.url, "client_id": oci.client[0],
        "client_secret": oci.client[1], "location_map": {"US01": "WH-EAST", "US02": "WH-EAST"},
        "product_map": {"p-1": "SKU-1", "p-2": "SKU-1"}}]}))
    spec = load_config(path).adapters[0]
    adapter = OmnichannelInventory.from_config(spec)
    adapter.id_maps = spec.id_maps
    try:
        answer = adapter.fetch(batch(["p-1", "p-2", "sku-1"], ["US01", "US02"]))
    finally:
        adapter.close()
    assert answer == [8, 8, 8, 8, 1, 1]
    # one of each: SKU-1 and sku-1 differ (case matters), the two stores are one OCI location
    assert oci.asked == [{"stockKeepingUnits": ["SKU-1", "sku-1"], "locationIdentifiers": ["WH-EAST"],
                          "useCache": True}]


# -- the token, errors, limits ------------------------------------------------------------

def test_the_token_is_reused_and_fetched_again_once_after_a_401(oci, salesforce):
    oci.stock = {("A", "L1"): 2}
    adapter = salesforce()
    assert adapter.fetch(batch(["A"], ["L1"])) == [2]
    assert adapter.fetch(batch(["A"], ["L1"])) == [2]
    assert len(oci.token_calls()) == 1
    first = set(oci.tokens)
    oci.revoke_tokens()  # the session ended early (revoked, or its timeout passed)
    assert adapter.fetch(batch(["A"], ["L1"])) == [2]
    assert len(oci.token_calls()) == 2
    assert [c.headers["authorization"][7:] in first for c in oci.availability_calls()] == [True, True, True, False]


def test_a_token_that_keeps_failing_is_salesforces_invalid_session_error(oci, salesforce):
    oci.stock = {("A", "L1"): 2}
    oci.refuse_tokens = True
    with pytest.raises(AdapterError) as exc:
        salesforce().fetch(batch(["A"], ["L1"]))
    assert str(exc.value).endswith(f"POST {oci.url}{PATH}: HTTP 401 (check the adapter's auth): "
                                   '[{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]')
    assert len(oci.token_calls()) == 2 and len(oci.availability_calls()) == 2
    for token in oci.tokens:
        assert token not in str(exc.value)


def test_a_wrong_client_secret_is_the_token_endpoints_error_without_the_secret(oci, salesforce):
    adapter = salesforce(client_secret="not-the-secret-0042")
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], ["L1"]))
    message = str(exc.value)
    assert ('auth: token endpoint answered HTTP 400: {"error":"invalid_client",'
            '"error_description":"invalid client credentials"}') in message
    assert "not-the-secret-0042" not in message and "not-the-secret-0042" not in adapter.stats()["last_error"]
    assert oci.refusals == ["wrong client id or secret"] and oci.availability_calls() == []


def test_a_200_that_says_success_false_is_an_error_with_its_messages_not_zeros(oci, salesforce):
    oci.stock = {("A", "L1"): 2}
    oci.report_errors = [{"errorCode": "LOCATION_NOT_FOUND", "message": "Location L1 doesn't exist."}]
    with pytest.raises(AdapterError, match=r"the answer reports errors: Location L1 doesn't exist\."):
        salesforce().fetch(batch(["A"], ["L1"]))
    oci.report_errors = []
    with pytest.raises(AdapterError, match="the answer reports errors: the answer says success: false"):
        salesforce().fetch(batch(["A"], ["L1"]))


def test_an_api_version_the_org_does_not_have_yet_surfaces_salesforces_not_found(oci, salesforce):
    oci.latest_version = 64
    with pytest.raises(AdapterError) as exc:
        salesforce().fetch(batch(["A"], ["L1"]))
    assert str(exc.value).endswith('HTTP 404: [{"errorCode":"NOT_FOUND","message":'
                                   '"The requested resource does not exist"}]')


def test_a_429_is_retried_after_retry_after_within_the_deadline(oci, salesforce):
    oci.stock = {("A", "L1"): 3}
    oci.throttle(1, status=429, retry_after="1")
    started = time.monotonic()
    assert salesforce().fetch(batch(["A"], ["L1"], seconds=5)) == [3]
    assert time.monotonic() - started >= 1.0 and len(oci.availability_calls()) == 2


def test_a_429_whose_retry_after_passes_the_deadline_fails_with_salesforces_error(oci, salesforce):
    oci.throttle(1, status=429, retry_after="30")
    with pytest.raises(AdapterError) as exc:
        salesforce().fetch(batch(["A"], ["L1"], seconds=2))
    assert str(exc.value).endswith("HTTP 429 (rate limited; Retry-After did not fit before the deadline): "
                                   '[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}]')
    assert len(oci.availability_calls()) == 1


def test_the_documented_503_rate_limit_is_retried_and_then_reported(oci, salesforce):
    oci.stock = {("A", "L1"): 3}
    oci.throttle(1, status=503)
    assert salesforce().fetch(batch(["A"], ["L1"])) == [3]
    oci.throttle(2, status=503)
    with pytest.raises(AdapterError, match=r"HTTP 503 after 2 attempts: .*Too many requests in an hour"):
        salesforce().fetch(batch(["A"], ["L1"]))


# -- configuration --------------------------------------------------------------------------

def sf_config(tmp_path, **options) -> Path:
    adapter = {"name": "oci", "type": "salesforce-oci", "url": "https://mycompany.my.salesforce.com",
               "client_id": "cid", "client_secret": "csecret", **options}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [adapter]}))
    return path


@pytest.mark.parametrize("options,key,message", [
    ({"url": "https://mycompany.my.salesforce.com/services/data"}, "url", "Must be your org's My Domain URL"),
    ({"api_version": 50.0}, "api_version", "Must be 51.0 or later"),
    ({"api_version": "v66.0"}, "api_version", "Must be a Salesforce API version like 66.0 (without the v)"),
    ({"quantity": "available"}, "quantity", "Must be one of: availableToFulfill, availableToOrder, onHand."),
    ({"client_secret": ""}, "client_secret", "Must not be empty."),
    ({"location_groups": "maybe"}, "location_groups", "Not a valid boolean."),
    ({"path": "/other"}, "path", "unknown key (check the spelling"),
])
def test_a_bad_key_is_reported_with_file_and_key(tmp_path, options, key, message):
    path = sf_config(tmp_path, **options)
    (problem,) = config_problems(path)
    assert problem.startswith(f"{path}: adapters[0].{key}: {message}")


def test_a_missing_client_id_is_reported_with_file_and_key(tmp_path):
    path = sf_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    del data["adapters"][0]["client_id"]
    path.write_text(yaml.safe_dump(data))
    assert config_problems(path) == [f"{path}: adapters[0].client_id: Missing data for required field."]


@pytest.mark.parametrize("given,sent", [(66, "v66.0"), (62.0, "v62.0"), ("64.0", "v64.0"), ("65", "v65.0")])
def test_the_api_version_may_be_written_as_a_number_or_a_string(given, sent):
    options = OmnichannelInventory.options_schema().load(
        {"url": "https://x.my.salesforce.com", "client_id": "c", "client_secret": "s", "api_version": given})
    assert options["url"] == f"https://x.my.salesforce.com/services/data/{sent}"
    assert options["auth"].token_url == "https://x.my.salesforce.com/services/oauth2/token"


# -- the example ----------------------------------------------------------------------------

EXAMPLE_ENV = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789",
               "SALESFORCE_URL": "https://mycompany.my.salesforce.com",
               "SALESFORCE_CLIENT_ID": "3MVG9.example-consumer-key",
               "SALESFORCE_CLIENT_SECRET": "example-consumer-secret-4242"}


def test_the_example_passes_check_config_with_its_variables():
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=EXAMPLE_ENV)
    assert result.exit_code == 0, result.output
    assert "1. salesforce-oci (type=salesforce-oci" in result.output
    for secret in ("3MVG9.example-consumer-key", "example-consumer-secret-4242"):
        assert secret not in result.output


@pytest.mark.slow
def test_the_example_config_serves_omnichannel_inventory_atp_end_to_end(oci, tmp_path):
    config = tmp_path / "salesforce-oci"
    shutil.copytree(EXAMPLE, config)
    oci.stock = {("1000061", "WH-EAST"): 14, ("1000061", "STORE-042"): 0, ("10000211", "WH-EAST"): 3.0}
    env = {**EXAMPLE_ENV, "SALESFORCE_URL": oci.url, "SALESFORCE_CLIENT_ID": oci.client[0],
           "SALESFORCE_CLIENT_SECRET": oci.client[1]}
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
    assert oci.asked == [{"stockKeepingUnits": ["1000061", "10000211"],
                          "locationIdentifiers": ["WH-EAST", "STORE-042"], "useCache": True}]  # the location_map
    output = log.read_text()
    for secret in [*oci.tokens, oci.client[1]]:
        assert secret not in output
