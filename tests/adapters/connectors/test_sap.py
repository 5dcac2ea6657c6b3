"""The SAP S/4HANA connectors (type: sap-availability, sap-material-stock) against
a loopback stand-in written from SAP's metadata (tests/vendors/sap.py), through
the real REST adapter machinery, and end to end under a real `atp-bridge serve`."""
import base64
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import requests
from marshmallow import ValidationError

from atp_bridge.adapters import adapter_class
from atp_bridge.adapters.engine.connectors.sap import SapAvailability, SapMaterialStock
from atp_bridge.config import load_config
from atp_bridge.config_types import AdapterSpec
from atp_bridge.errors import AdapterError, ConfigError
from tests.adapters.conftest import batch
from tests.serve import BridgeProcess
from tests.vendors.sap import AVAILY, DATETIMEOFFSET, FIXTURES, STOCK, SapS4, string_literal

USER, PASSWORD = "ATP_BRIDGE", "s3cret-Passw0rd"
BASIC = {"type": "basic", "username": USER, "password": PASSWORD}
HOSTILE = ["it's", "''", "a) or (Plant eq 'x'", "x' or Material eq 'TG11", "a&b=c", "100%", "line\nbreak",
           "a/b?c#d", "Ünïcødé"]
EXAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples"


@pytest.fixture
def sap():
    with SapS4() as server:
        yield server
    errors = getattr(server, "handler_errors", ())  # a stand-in bug is a failure (FakeErp records them)
    assert not errors, errors[0]


@pytest.fixture
def connector(sap):
    """``connector(cls, **options)``: the connector loaded through its schema
    (url: the stand-in's service root, auth: basic) and built like the bridge does."""
    made = []

    def make(cls, name="sap", **options):
        options.setdefault("url", sap.url + (AVAILY if cls is SapAvailability else STOCK))
        options.setdefault("auth", BASIC)
        adapter = cls.from_config(AdapterSpec(name=name, type="sap", options=cls.options_schema().load(options)))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def test_both_type_names_are_the_sap_connectors():
    assert adapter_class("sap-availability") is SapAvailability
    assert adapter_class("sap-material-stock") is SapMaterialStock


NOW = "datetimeoffset'2026-12-01T09:00:00Z'"


@pytest.mark.parametrize("method,path,params,headers,status,text", [
    ("GET", "/DetermineAvailabilityAt", {"SupplyingPlant": "1710", "Material": "'TG11'", "ATPCheckingRule": "'A'",
                                         "RequestedUTCDateTime": NOW}, {}, 400, "Invalid literal for parameter"),
    ("GET", "/DetermineAvailabilityAt", {"SupplyingPlant": "'1710'", "Material": "'it's'", "ATPCheckingRule": "'A'",
                                         "RequestedUTCDateTime": NOW}, {}, 400, "Invalid literal for parameter"),
    ("GET", "/DetermineAvailabilityAt", {"SupplyingPlant": "'1710'", "Material": "'TG11'", "ATPCheckingRule": "'A'"},
     {}, 400, "Parameter RequestedUTCDateTime of function import DetermineAvailabilityAt is missing"),
    ("GET", "/DetermineAvailabilityAt", {"SupplyingPlant": "'1710'", "Material": "'TG11'", "ATPCheckingRule": "'A'",
                                         "RequestedUTCDateTime": "'2026-12-01'"}, {}, 400, "RequestedUTCDateTime"),
    ("POST", "/DetermineAvailabilityAt", {}, {}, 405, "use GET"),
    ("GET", "/DetermineAvailabilityAt", {}, {"Authorization": "Basic d3Jvbmc6d3Jvbmc="}, 401, "Logon failed"),
])
def test_the_availability_stand_in_refuses_what_sap_refuses(sap, method, path, params, headers, status, text):
    auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    r = requests.request(method, sap.url + AVAILY + path, params=params, timeout=5,
                         headers={"Accept": "application/json", **auth, **headers})
    assert r.status_code == status
    assert r.json()["error"]["message"]["lang"] == "en" and text in r.json()["error"]["message"]["value"]


@pytest.mark.parametrize("params,status,text", [
    ({"$filter": "Material eq TG11", "$format": "json"}, 400, "Invalid filter expression"),
    ({"$filter": "Material eq 'TG11' or", "$format": "json"}, 400, "Invalid filter expression"),
    ({"$filter": "Matrial eq 'TG11'", "$format": "json"}, 400, "Property Matrial not found"),
    ({"$select": "Material,Qty", "$format": "json"}, 400, "Property Qty not found"),
    ({"$filter": "Material eq 'TG11'"}, 200, "<feed"),  # no JSON asked: Atom
])
def test_the_stock_stand_in_refuses_what_sap_refuses(sap, params, status, text):
    auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    r = requests.get(sap.url + STOCK + "/A_MatlStkInAcctMod", params=params, headers=auth, timeout=5)
    assert r.status_code == status
    assert text in (r.json()["error"]["message"]["value"] if status != 200 else r.text)


# -- sap-availability: DetermineAvailabilityAt ---------------------------------------

def test_availability_asks_determine_availability_at_once_per_pair_as_documented(sap, connector):
    sap.availability = {("TG11", "1710"): "12.000", ("TG12", "1710"): "0.500", ("TG11", "1720"): 3}
    before = datetime.now(timezone.utc).replace(microsecond=0)
    answer = connector(SapAvailability).fetch(batch(["TG11", "TG12"], ["1710", "1720"]))
    assert answer == [12.0, 3.0, 0.5, 0.0]
    seen = sap.calls(AVAILY, "DetermineAvailabilityAt")
    assert len(seen) == 4
    assert sorted((s.query["Material"], s.query["SupplyingPlant"]) for s in seen) == [
        ("'TG11'", "'1710'"), ("'TG11'", "'1720'"), ("'TG12'", "'1710'"), ("'TG12'", "'1720'")]
    for s in seen:
        assert s.method == "GET" and s.body == b""
        assert set(s.query) == {"SupplyingPlant", "Material", "ATPCheckingRule", "RequestedUTCDateTime"}
        assert s.query["ATPCheckingRule"] == "'A'"
        assert s.headers["accept"] == "application/json"
        assert s.headers["authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        when = DATETIMEOFFSET.match(s.query["RequestedUTCDateTime"])
        assert when and when[2] == "Z", s.query["RequestedUTCDateTime"]
        asked = datetime.fromisoformat(when[1] + "+00:00")
        assert before <= asked <= datetime.now(timezone.utc)  # "now", in UTC, to the second


def test_the_atp_checking_rule_is_configurable(sap, connector):
    sap.availability = {("TG11", "1710"): 4}
    assert connector(SapAvailability, atp_checking_rule="Z1").fetch(batch(["TG11"], ["1710"])) == [4.0]
    assert [s.query["ATPCheckingRule"] for s in sap.calls(AVAILY, "DetermineAvailabilityAt")] == ["'Z1'"]


@pytest.mark.parametrize("material", HOSTILE)
def test_a_hostile_material_stays_one_odata_literal_of_one_parameter(sap, connector, material):
    sap.availability = {(material, "1710"): 9}
    assert connector(SapAvailability).fetch(batch([material], ["1710"])) == [9.0]
    (seen,) = sap.calls(AVAILY, "DetermineAvailabilityAt")
    assert set(seen.query) == {"SupplyingPlant", "Material", "ATPCheckingRule", "RequestedUTCDateTime"}
    assert string_literal(seen.query["Material"], "Material") == material
    assert seen.query["SupplyingPlant"] == "'1710'"


def test_the_documented_answer_body_is_read(sap, connector):
    body = orjson.loads((FIXTURES / "determine_availability_at.json").read_bytes())
    sap.respond = lambda erp, seen: (200, body)
    assert connector(SapAvailability).fetch(batch(["TG11"], ["1710"])) == [12.0]


def test_an_answer_without_the_quantity_is_an_error_not_unknown(sap, connector):
    sap.respond = lambda erp, seen: (200, {"d": {"EntitySets": ["A_Something"]}})
    with pytest.raises(AdapterError, match=r"no d\.DetermineAvailabilityAt\.AvailableQuantityInBaseUnit "
                                           r"\(is url the API_PRODUCT_AVAILY_INFO_BASIC service root\?\)"):
        connector(SapAvailability).fetch(batch(["TG11"], ["1710"]))


def test_sap_refusing_a_parameter_surfaces_its_message(sap, connector):
    with pytest.raises(AdapterError) as e:
        connector(SapAvailability).fetch(batch(["TG11"], ["1710/171A"]))  # a plant has 4 characters
    assert "HTTP 400: Value of parameter SupplyingPlant exceeds the maximum length of 4" in str(e.value)


def test_a_wrong_password_is_a_401_pointing_at_auth_without_the_secret(sap, connector):
    adapter = connector(SapAvailability, auth={**BASIC, "password": "wrong-Passw0rd"})
    with pytest.raises(AdapterError) as e:
        adapter.fetch(batch(["TG11"], ["1710"]))
    assert "HTTP 401 (check the adapter's auth): Logon failed: user, password or token not accepted" in str(e.value)
    assert "wrong-Passw0rd" not in str(e.value)
    assert len(sap.calls(AVAILY, "DetermineAvailabilityAt")) == 1


def test_an_api_key_header_is_sent_as_the_api_hub_sandbox_wants(sap, connector):
    sap.auth, sap.availability = ("header", "APIKey", "sandbox-key-123"), {("TG11", "1710"): 2}
    adapter = connector(SapAvailability, auth={"type": "header", "name": "APIKey", "value": "sandbox-key-123"})
    assert adapter.fetch(batch(["TG11"], ["1710"])) == [2.0]


def oauth2(sap):
    return {"type": "oauth2_client_credentials", "token_url": f"{sap.url}/token",
            "client_id": sap.client[0], "client_secret": sap.client[1]}


def test_oauth2_fetches_one_token_reuses_it_and_refetches_once_on_a_401(sap, connector):
    sap.auth, sap.availability = ("bearer",), {("TG11", "1710"): 5, ("TG11", "1720"): 6}
    adapter = connector(SapAvailability, auth=oauth2(sap), max_concurrency=1)
    assert adapter.fetch(batch(["TG11"], ["1710", "1720"])) == [5.0, 6.0]
    assert adapter.fetch(batch(["TG11"], ["1710"])) == [5.0]
    assert len(sap.requests("/token")) == 1 and adapter.stats()["token_fetches"] == 1
    assert {s.headers["authorization"] for s in sap.calls(AVAILY, "DetermineAvailabilityAt")} == {"Bearer tok-1"}

    sap.revoke_tokens()  # SAP answers the old token with 401: one new token, the call made again
    assert adapter.fetch(batch(["TG11"], ["1710"])) == [5.0]
    assert len(sap.requests("/token")) == 2
    assert [s.headers["authorization"] for s in sap.calls(AVAILY, "DetermineAvailabilityAt")][-2:] == [
        "Bearer tok-1", "Bearer tok-2"]


def test_a_429_is_retried_after_retry_after_within_the_deadline(sap, connector):
    sap.availability = {("TG11", "1710"): 8}
    sap.throttle(1, retry_after="1")
    assert connector(SapAvailability).fetch(batch(["TG11"], ["1710"], seconds=5)) == [8.0]
    first, second = sap.calls(AVAILY, "DetermineAvailabilityAt")
    assert second.at - first.at >= 0.95


def test_a_429_past_the_deadline_fails_at_once_with_sap_s_message(sap, connector):
    sap.throttle(1, retry_after="30")
    started = time.monotonic()
    with pytest.raises(AdapterError) as e:
        connector(SapAvailability).fetch(batch(["TG11"], ["1710"], seconds=3))
    assert time.monotonic() - started < 2.5
    assert ("HTTP 429 (rate limited; Retry-After did not fit before the deadline): "
            "Too many requests; try again later") in str(e.value)


# -- sap-material-stock: A_MatlStkInAcctMod ------------------------------------------

def test_material_stock_sends_one_filter_for_the_grid_as_documented(sap, connector):
    sap.add_stock("TG11", "1710", "171A", "120.000")
    sap.add_stock("TG11", "1710", "171B", "7.5")
    sap.add_stock("TG12", "1720", "172A", 3)
    answer = connector(SapMaterialStock).fetch(batch(["TG11", "TG12"], ["1710", "1720"]))
    assert answer == [127.5, None, None, 3.0]
    (seen,) = sap.calls()
    assert seen.method == "GET" and seen.path == f"{STOCK}/A_MatlStkInAcctMod"
    assert seen.query == {
        "$filter": "(Material eq 'TG11' or Material eq 'TG12') and (Plant eq '1710' or Plant eq '1720') "
                   "and (InventoryStockType eq '01')",
        "$select": "Material,Plant,StorageLocation,InventoryStockType,MatlWrhsStkQtyInMatlBaseUnit",
        "$format": "json"}
    assert seen.headers["accept"] == "application/json"


def test_the_documented_rows_are_summed_per_pair_and_other_stock_types_left_out(sap, connector):
    body = orjson.loads((FIXTURES / "matl_stk_in_acct_mod.json").read_bytes())
    del body["d"]["__next"]
    sap.respond = lambda erp, seen: (200, body)  # the fixture as is: a type 07 row the filter would drop
    answer = connector(SapMaterialStock).fetch(batch(["TG11"], ["1710", "1710/171A"]))
    assert answer == [127.5, 120.0]


def test_a_storage_location_counts_alone_and_its_plant_counts_all_in_one_call(sap, connector):
    sap.add_stock("TG11", "1710", "171A", 10)
    sap.add_stock("TG11", "1710", "171B", 5)
    sap.add_stock("TG11", "1710", "", 2)       # plant-level stock (no storage location)
    sap.add_stock("TG11", "1720", "171A", 99)  # same storage location name, other plant
    answer = connector(SapMaterialStock).fetch(batch(["TG11"], ["1710", "1710/171A", "1710/171B", "1720/171B"]))
    assert answer == [17.0, 10.0, 5.0, None]
    (seen,) = sap.calls()
    assert seen.query["$filter"] == (
        "(Material eq 'TG11') and (Plant eq '1710' or (Plant eq '1710' and StorageLocation eq '171A') or "
        "(Plant eq '1710' and StorageLocation eq '171B') or (Plant eq '1720' and StorageLocation eq '171B')) "
        "and (InventoryStockType eq '01')")


def test_stock_types_choose_which_rows_count(sap, connector):
    sap.add_stock("TG11", "1710", "171A", 10, stock_type="01")
    sap.add_stock("TG11", "1710", "171A", 4, stock_type="02")  # quality inspection
    sap.add_stock("TG11", "1710", "171A", 3, stock_type="07")  # blocked
    assert connector(SapMaterialStock).fetch(batch(["TG11"], ["1710"])) == [10.0]
    assert connector(SapMaterialStock, stock_types=["01", "02"]).fetch(batch(["TG11"], ["1710"])) == [14.0]
    assert sap.calls()[-1].query["$filter"].endswith("and (InventoryStockType eq '01' or InventoryStockType eq '02')")


def test_server_side_pages_are_followed_through_d_next_and_summed(sap, connector):
    sap.page_size = 2
    for i in range(5):
        sap.add_stock("TG11", "1710", f"17{i}A", i + 1)
    assert connector(SapMaterialStock).fetch(batch(["TG11"], ["1710"])) == [15.0]
    pages = sap.calls()
    assert [p.query.get("$skiptoken") for p in pages] == [None, "2", "4"]
    assert all(p.query["$filter"] == pages[0].query["$filter"] for p in pages)  # the link carries the query
    assert all(p.headers["authorization"].startswith("Basic ") for p in pages)


def test_more_pages_than_max_pages_is_an_error_never_a_cut_answer(sap, connector):
    sap.page_size = 1
    for i in range(25):
        sap.add_stock("TG11", "1710", f"S{i:03d}", 1)
    with pytest.raises(AdapterError, match="more than paginate.max_pages=20 pages"):
        connector(SapMaterialStock).fetch(batch(["TG11"], ["1710"]))


@pytest.mark.parametrize("material", HOSTILE)
def test_a_hostile_material_stays_one_literal_in_the_filter(sap, connector, material):
    sap.add_stock(material, "1710", "171A", 6)
    sap.add_stock("TG11", "1710", "171A", 50)  # what an injected "or Material eq 'TG11'" would add
    assert connector(SapMaterialStock).fetch(batch([material], ["1710"])) == [6.0]
    (seen,) = sap.calls()
    assert set(seen.query) == {"$filter", "$select", "$format"}
    literal = "'" + material.replace("'", "''") + "'"
    assert seen.query["$filter"].startswith(f"(Material eq {literal}) and (Plant eq '1710')")


@pytest.mark.parametrize("location", ["17'0", "1710/17'A", "1710/a) or (Plant eq '1720"])
def test_a_hostile_location_stays_literals_in_the_filter(sap, connector, location):
    sap.add_stock("TG11", "1720", "171A", 50)
    assert connector(SapMaterialStock).fetch(batch(["TG11"], [location])) == [None]
    assert len(sap.calls()) == 1  # the stand-in parsed the filter: no 400


def test_calls_are_cut_at_batch_size_pairs(sap, connector):
    products = [f"M{i:03d}" for i in range(120)]
    for p in products:
        sap.add_stock(p, "1710", "171A", 1)
    adapter = connector(SapMaterialStock)  # 50 pairs a call by default
    assert adapter.fetch(batch(products, ["1710"])) == [1.0] * 120
    assert sorted(s.query["$filter"].count("Material eq") for s in sap.calls()) == [20, 50, 50]
    assert connector(SapMaterialStock, batch_size=500).fetch(batch(products, ["1710"])) == [1.0] * 120
    # one call for all 120: SAP's 100-row pages, the second through d.__next
    assert [s.query.get("$skiptoken") for s in sap.calls()[3:]] == [None, "100"]


def test_an_answer_without_results_is_an_error_not_unknown(sap, connector):
    sap.respond = lambda erp, seen: (200, {"d": {"Material": "TG11"}})
    with pytest.raises(AdapterError, match=r"no d\.results list \(is url the API_MATERIAL_STOCK_SRV "
                                           r"service root\?\)"):
        connector(SapMaterialStock).fetch(batch(["TG11"], ["1710"]))


def test_a_filter_sap_refuses_surfaces_its_message(sap, connector):
    sap.odata_error_next(1, 400, "Property Plant not found in type A_MatlStkInAcctModType")
    with pytest.raises(AdapterError, match="HTTP 400: Property Plant not found in type A_MatlStkInAcctModType"):
        connector(SapMaterialStock).fetch(batch(["TG11"], ["1710"]))


# -- configuration -------------------------------------------------------------------

@pytest.mark.parametrize("cls,options,key,message", [
    (SapAvailability, {}, "url", "Missing data for required field."),
    (SapAvailability, {"url": "ftp://sap"}, "url", "Must be an http:// or https:// URL with a host."),
    (SapAvailability, {"url": "https://sap.example/API_PRODUCT_AVAILY_INFO_BASIC?sap-client=100"}, "url",
     "send sap-client as a header"),
    (SapAvailability, {"url": "https://s.example", "atp_checking_rule": "ABC"}, "atp_checking_rule",
     "Must be an SAP code of 1 or 2 letters or digits."),
    (SapAvailability, {"url": "https://s.example", "path": "/x"}, "path", "Unknown field."),
    (SapAvailability, {"url": "https://s.example", "auth": {"type": "basic", "username": "u"}}, "auth",
     "password"),
    (SapMaterialStock, {"url": "https://s.example", "stock_types": []}, "stock_types",
     "Give at least one stock type."),
    (SapMaterialStock, {"url": "https://s.example", "stock_types": ["01", "1 or 1"]}, "stock_types",
     "Must be an SAP code of 1 or 2 letters or digits."),
    (SapMaterialStock, {"url": "https://s.example", "stock_type": ["01"]}, "stock_type", "Unknown field."),
])
def test_a_bad_key_is_refused_naming_it(cls, options, key, message):
    with pytest.raises(ValidationError) as e:
        cls.options_schema().load(options)
    assert key in e.value.messages, e.value.messages
    assert message in str(e.value.messages)


def test_check_config_names_the_file_and_key(config_file):
    path = config_file({"adapters": [{"name": "sap", "type": "sap-material-stock",
                                      "url": "https://sap.example/API_MATERIAL_STOCK_SRV",
                                      "stock_types": ["01", "unrestricted"]}]})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [f"{path}: adapters[0].stock_types.1: Must be an SAP code of 1 or 2 letters "
                                "or digits."]


def test_the_rest_keys_that_apply_are_taken_and_override_the_preset():
    options = SapMaterialStock.options_schema().load({"url": "https://s.example/API_MATERIAL_STOCK_SRV",
                                                      "batch_size": 10, "timeout_ms": 900,
                                                      "headers": {"sap-client": "100"}})
    assert (options["batch_size"], options["timeout_ms"], options["method"]) == (10, 900, "GET")
    assert dict(options["headers"]) == {"sap-client": "100"}
    assert SapMaterialStock.options_schema().load({"url": "https://s.example"})["batch_size"] == 50


# -- end to end ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("example,root", [("sap-availability", AVAILY), ("sap-material-stock", STOCK)])
def test_the_example_serves_sap_s_numbers_under_a_real_atp_bridge_serve(example, root, sap, tmp_path):
    sap.availability = {("TG11", "1710"): "12.000", ("TG12", "1710"): "0.000"}
    sap.add_stock("TG11", "1710", "171A", "12.000")
    sap.add_stock("TG11", "1710", "171B", "3.000", stock_type="07")
    config = tmp_path / example
    shutil.copytree(EXAMPLES / example, config)
    key = "e2e-newstore-key-0123456789"
    env = {"NEWSTORE_API_KEY": key, "ERP_PASSWORD": PASSWORD, "SAP_URL": sap.url + root}
    log = tmp_path / "serve.log"
    with BridgeProcess(config, env=env, output=log) as bridge:
        bridge.wait_ready(path="/readyz")
        body = {"products": [{"product_id": "p1", "external_identifier": "TG11"},
                             {"product_id": "p2", "external_identifier": "TG12"}],
                "fulfillment_locations": ["1710"]}
        answer = bridge.post(body, headers={"Authorization": key})
        assert answer.status_code == 200, log.read_text()[-3000:]
        assert "X-ATP-Degraded" not in answer.headers, log.read_text()[-3000:]
        got = {(a["external_identifier"], a["fulfillment_location"]): a["atp"]
               for a in answer.json()["availabilities"]}
        # sap-material-stock keeps one back (safety_stock: 1); a material without rows is unknown: 0
        assert got == ({("TG11", "1710"): 12, ("TG12", "1710"): 0} if example == "sap-availability"
                       else {("TG11", "1710"): 11, ("TG12", "1710"): 0})
    assert sap.requests(f"{root}/$metadata"), "readyz did not ask SAP's $metadata"
    assert PASSWORD not in log.read_text()
