"""``type: odoo`` (Odoo's JSON-2 API and JSON-RPC ``execute_kw``, product.product
quantities in a stock location's context) against its loopback stand-in
(tests/vendors/odoo.py), through the real REST machinery."""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from atp_bridge.adapters.engine.connectors.odoo import JSON2_PATH, Odoo
from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError
from tests.adapters.conftest import batch
from tests.adapters.connectors.conftest import config_problems
from tests.serve import BridgeProcess
from tests.vendors.odoo import Odoo as OdooStandIn

HOSTILE = ["it's", '"', 'a"]], ["name", "ilike", "%', "]]", "back\\slash", "line\nbreak", "tab\there",
           "a, b", "{{ 7*7 }}", "<b>&amp;</b>", "né/ü?#&=", "100%", " padded "]
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "odoo"


@pytest.fixture
def server():
    with OdooStandIn() as s:
        yield s
    assert s.handler_errors == []  # the stand-in's own bugs fail the test


@pytest.fixture
def odoo(server, built):
    """``odoo(**options)`` -> an Odoo adapter loaded through its schema, closed after the test."""
    def make(**options):
        options = {"url": server.url, "api_key": server.api_key, "database": server.database, **options}
        if options.get("api") == "jsonrpc":
            options.setdefault("uid", server.uid)
        options = {k: v for k, v in options.items() if v is not None}
        return built(Odoo, "odoo", "odoo", options)

    return make


# -- JSON-2 (Odoo 19): the documented request ------------------------------------------------

def test_json2_is_one_search_read_per_location_with_bearer_database_and_an_integer_location(server, odoo):
    server.stock = {("FURN_0269", 8): 12.0, ("FURN_0269", 19): 4.0, ("FURN_7800", 8): 1.5}
    answer = odoo(max_concurrency=1).fetch(batch(["FURN_0269", "FURN_7800", "NOPE"], ["8", "19"]))
    assert answer == [12.0, 4.0, 1.5, 0.0, None, None]  # an unknown code is no record: unknown
    calls = server.search_calls()
    assert [(c.method, c.path) for c in calls] == [("POST", JSON2_PATH)] * 2
    first = calls[0]
    assert first.headers["authorization"] == f"bearer {server.api_key}"
    assert first.headers["x-odoo-database"] == "mycompany"
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {"domain": [["default_code", "in", ["FURN_0269", "FURN_7800", "NOPE"]]],
                            "fields": ["default_code", "free_qty"], "context": {"location": 8}}
    assert [type(c.json()["context"]["location"]) for c in calls] == [int, int]
    assert sorted(a["location"] for a in server.asked) == [8, 19]
    assert server.refusals == []


def test_a_location_sent_as_a_string_would_be_a_name_search_answering_zero(server):
    # what the stand-in does with "8" (Odoo's _get_domain_locations): why the connector sends 8
    server.stock = {("A", 8): 5.0}
    assert server._search_read("json2", "product.product", "search_read",
                               {"domain": [["default_code", "in", ["A"]]], "fields": ["free_qty"]},
                               {"location": "8"}) == [{"id": 100, "free_qty": 0}]
    assert server.refusals == ["location '8' is no id: searched as a name"]


def test_without_database_no_header_is_sent(server, odoo):
    server.stock = {("A", 8): 2.0}
    assert odoo(database=None).fetch(batch(["A"], ["8"])) == [2.0]
    assert "x-odoo-database" not in server.search_calls()[0].headers


@pytest.mark.parametrize("quantity", ["free_qty", "qty_available", "virtual_available"])
def test_quantity_picks_the_product_field_that_is_the_atp(server, odoo, quantity):
    server.stock = {("A", 8): {"free_qty": 3.0, "qty_available": 5.0, "virtual_available": 9.0}}
    expected = {"free_qty": 3.0, "qty_available": 5.0, "virtual_available": 9.0}[quantity]
    assert odoo(quantity=quantity).fetch(batch(["A"], ["8"])) == [expected]
    assert server.asked[0]["fields"] == ["default_code", quantity]


def test_product_field_barcode_filters_and_reads_the_barcode(server, odoo):
    server.stock = {("A", 8): 7.0}
    server.barcodes = {"A": "4006381333931"}
    assert odoo(product_field="barcode").fetch(batch(["4006381333931", "0000"], ["8"])) == [7.0, None]
    assert server.asked[0]["field"] == "barcode" and server.asked[0]["fields"] == ["barcode", "free_qty"]


def test_non_integer_locations_are_not_asked_and_are_unknown(server, odoo, caplog):
    server.stock = {("A", 8): 2.0}
    with caplog.at_level(logging.WARNING):
        assert odoo().fetch(batch(["A"], ["US01", "8", "0", "-3", "8.0", "WH/Stock"])) \
            == [None, 2.0, None, None, None, None]
    assert [a["location"] for a in server.asked] == [8]
    assert "location 'US01' is no stock.location id" in caplog.text
    assert odoo().fetch(batch(["A"], ["US01"])) == [None] and len(server.asked) == 1  # no call at all


def test_mapped_newstore_locations_become_integer_ids(server, tmp_path):
    server.stock = {("SKU-1", 8): 6.0, ("SKU-1", 19): 9.0}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [{
        "name": "odoo", "type": "odoo", "url": server.url, "api_key": server.api_key,
        "database": server.database, "location_map": {"US01": "8", "US02": "8", "DC01": "19"}}]}))
    spec = load_config(path).adapters[0]
    adapter = Odoo.from_config(spec)
    adapter.id_maps = spec.id_maps  # as the bridge sets it
    try:
        # two NewStore stores on one location share its call; an unmapped one is unknown
        assert adapter.fetch(batch(["SKU-1"], ["US01", "US02", "DC01", "ZZ"])) == [6.0, 6.0, 9.0, None]
    finally:
        adapter.close()
    assert sorted(a["location"] for a in server.asked) == [8, 19]
    assert server.refusals == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_product_code_with_quotes_brackets_or_escapes_stays_one_json_string(server, odoo, hostile):
    server.stock = {(hostile, 8): 5.0, ("B", 8): 2.0}
    assert odoo().fetch(batch([hostile, "B"], ["8"])) == [5.0, 2.0]
    assert server.refusals == []
    assert server.asked[0]["products"] == [hostile, "B"]


def test_records_of_one_code_are_added_up_and_numeric_strings_are_numbers(server, odoo):
    server.respond = lambda s, seen: (200, [{"id": 1, "default_code": "A", "free_qty": "2.500"},
                                            {"id": 2, "default_code": "A", "free_qty": 4},
                                            {"id": 3, "default_code": "B", "free_qty": "12.000"}])
    assert odoo().fetch(batch(["A", "B"], ["8"])) == [6.5, 12.0]


def test_many_locations_run_concurrently_one_call_each(server, odoo):
    locations = [str(i) for i in range(100, 112)]
    server.stock = {("A", int(loc)): float(loc) for loc in locations}
    assert odoo(max_concurrency=4).fetch(batch(["A", "B"], locations)) \
        == [float(loc) for loc in locations] + [None] * len(locations)
    assert sorted(a["location"] for a in server.asked) == [int(loc) for loc in locations]
    assert all(a["products"] == ["A", "B"] for a in server.asked)


# -- JSON-2 errors ----------------------------------------------------------------------------

def test_a_wrong_api_key_is_odoos_401_invalid_apikey_not_retried_and_not_shown(server, odoo):
    adapter = odoo(api_key="0000wrong0000key0000")
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], ["8"]))
    message = str(exc.value)
    assert f"{JSON2_PATH}: HTTP 401 (check the adapter's auth): " in message
    assert '"message":"Invalid apikey"' in message
    assert "0000wrong0000key0000" not in message and "0000wrong0000key0000" not in adapter.stats()["last_error"]
    assert len(server.search_calls()) == 1


def test_a_database_the_server_does_not_host_is_a_404(server, odoo):
    with pytest.raises(AdapterError, match=r"HTTP 404: .*werkzeug.exceptions.NotFound"):
        odoo(database="otherdb").fetch(batch(["A"], ["8"]))


def test_a_field_the_model_does_not_have_is_odoos_422_invalid_field(server, odoo):
    with pytest.raises(AdapterError) as exc:
        odoo(product_field="x_sku").fetch(batch(["A"], ["8"]))
    assert "HTTP 422: " in str(exc.value)
    assert "Invalid field 'x_sku' on model 'product.product'" in str(exc.value)


def test_a_429_is_retried_after_retry_after_within_the_deadline(server, odoo):
    server.stock = {("A", 8): 3.0}
    server.throttle(1, retry_after="1")
    started = time.monotonic()
    assert odoo().fetch(batch(["A"], ["8"], seconds=5)) == [3.0]
    assert time.monotonic() - started >= 1.0 and len(server.search_calls()) == 2


def test_a_429_whose_retry_after_passes_the_deadline_fails_at_once(server, odoo):
    server.throttle(1, retry_after="30")
    with pytest.raises(AdapterError) as exc:
        odoo().fetch(batch(["A"], ["8"], seconds=2))
    assert "HTTP 429 (rate limited; Retry-After did not fit before the deadline): Too Many Requests" \
        in str(exc.value)
    assert len(server.search_calls()) == 1


def test_a_json2_answer_that_is_no_list_is_an_error_not_unknown_stock(server, odoo):
    server.respond = lambda s, seen: (200, {"jsonrpc": "2.0", "result": []})  # url at something else
    with pytest.raises(AdapterError, match=r"no list of records in the answer \(is url the Odoo server"):
        odoo().fetch(batch(["A"], ["8"]))


# -- JSON-RPC (Odoo 17 / 18) -------------------------------------------------------------------

def test_jsonrpc_is_execute_kw_search_read_with_db_uid_key_and_an_integer_location(server, odoo):
    server.stock = {("FURN_0269", 8): 12.0, ("FURN_7800", 8): 2.0}
    assert odoo(api="jsonrpc").fetch(batch(["FURN_0269", "FURN_7800", "NOPE"], ["8"])) == [12.0, 2.0, None]
    (call,) = server.search_calls("jsonrpc")
    assert (call.method, call.path) == ("POST", "/jsonrpc")
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers and "x-odoo-database" not in call.headers
    assert call.json() == {"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
        "service": "object", "method": "execute_kw",
        "args": ["mycompany", 7, server.api_key, "product.product", "search_read",
                 [[["default_code", "in", ["FURN_0269", "FURN_7800", "NOPE"]]]],
                 {"fields": ["default_code", "free_qty"], "context": {"location": 8}}]}}
    assert server.refusals == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_jsonrpc_hostile_codes_stay_strings(server, odoo, hostile):
    server.stock = {(hostile, 19): 1.0}
    assert odoo(api="jsonrpc").fetch(batch([hostile], ["19"])) == [1.0]
    assert server.asked[0]["products"] == [hostile] and server.refusals == []


@pytest.mark.parametrize("change", [{"api_key": "0000wrong0000key0000"}, {"uid": 8}, {"database": "otherdb"}])
def test_jsonrpc_access_denied_in_a_200_fails_with_odoos_message_without_the_key(server, odoo, change):
    adapter = odoo(api="jsonrpc", **change)
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], ["8"]))
    message = str(exc.value)
    assert "the answer reports errors: Access Denied" in message
    assert server.api_key not in message and "0000wrong0000key0000" not in message
    assert "0000wrong0000key0000" not in adapter.stats()["last_error"]
    assert len(server.search_calls("jsonrpc")) == 1


def test_jsonrpc_invalid_field_is_odoos_message(server, odoo):
    with pytest.raises(AdapterError, match=r"reports errors: Invalid field 'x_sku' on model 'product.product'"):
        odoo(api="jsonrpc", product_field="x_sku").fetch(batch(["A"], ["8"]))


def test_jsonrpc_error_without_data_uses_the_error_message(server, odoo):
    server.respond = lambda s, seen: (200, {"jsonrpc": "2.0", "id": 1,
                                            "error": {"code": 100, "message": "Odoo Session Expired"}})
    with pytest.raises(AdapterError, match=r"reports errors: Odoo Session Expired"):
        odoo(api="jsonrpc").fetch(batch(["A"], ["8"]))


def test_jsonrpc_answer_without_a_result_list_is_an_error(server, odoo):
    server.respond = lambda s, seen: (200, [{"id": 1, "default_code": "A", "free_qty": 1}])
    with pytest.raises(AdapterError, match=r"no result list in the answer"):
        odoo(api="jsonrpc").fetch(batch(["A"], ["8"]))


def test_jsonrpc_with_login_asks_authenticate_once_and_uses_its_uid(server, odoo):
    server.stock = {("A", 8): 4.0, ("A", 19): 1.0}
    adapter = odoo(api="jsonrpc", uid=None, login=server.login, max_concurrency=4)
    assert adapter.fetch(batch(["A"], ["8", "19"])) == [4.0, 1.0]
    assert adapter.fetch(batch(["A"], ["19"])) == [1.0]
    calls = server.requests("/jsonrpc")
    services = [(c.json()["params"]["service"], c.json()["params"]["method"]) for c in calls]
    assert services == [("common", "authenticate")] + [("object", "execute_kw")] * 3
    assert calls[0].json()["params"]["args"] == [server.database, server.login, server.api_key, {}]
    assert all(c.json()["params"]["args"][1] == 7 for c in calls[1:])


@pytest.mark.parametrize("change", [{"login": "nobody@example.com"}, {"api_key": "0000wrong0000key0000"}])
def test_jsonrpc_a_refused_login_fails_clearly_and_is_asked_again_next_time(server, odoo, change):
    adapter = odoo(api="jsonrpc", uid=None, **{"login": server.login, **change})
    for _ in range(2):
        with pytest.raises(AdapterError) as exc:
            adapter.fetch(batch(["A"], ["8"]))
        message = str(exc.value)
        assert "/jsonrpc (common.authenticate): Odoo refused the login and API key (the answer was false)" \
            in message
        assert "0000wrong0000key0000" not in message
    assert len(server.requests("/jsonrpc")) == 2 and server.asked == []


def test_jsonrpc_authenticate_error_object_surfaces(server, odoo):
    server.respond = lambda s, seen: (200, {"jsonrpc": "2.0", "id": 1, "error": {
        "code": 200, "message": "Odoo Server Error",
        "data": {"name": "psycopg2.OperationalError", "message": 'database "x" does not exist'}}})
    with pytest.raises(AdapterError, match=r'common.authenticate\): database "x" does not exist'):
        odoo(api="jsonrpc", uid=None, login="bot").fetch(batch(["A"], ["8"]))


def test_the_stand_ins_authenticate_answers_the_uid(server):
    # common.authenticate as documented (the connector asks it when given login)
    import requests
    body = {"jsonrpc": "2.0", "method": "call", "id": 3,
            "params": {"service": "common", "method": "authenticate",
                       "args": [server.database, server.login, server.api_key, {}]}}
    assert requests.post(server.url + "/jsonrpc", json=body, timeout=5).json() == \
        {"jsonrpc": "2.0", "id": 3, "result": 7}
    body["params"]["args"][2] = "wrong"
    assert requests.post(server.url + "/jsonrpc", json=body, timeout=5).json()["result"] is False


def test_the_repr_names_the_server_without_the_key(odoo, server):
    for api in ("json2", "jsonrpc"):
        text = repr(odoo(api=api))
        assert text == f"Odoo('odoo', {server.url})" and server.api_key not in text


# -- check-config ------------------------------------------------------------------------------

def problems_of(tmp_path, **options) -> list[str]:
    adapter = {"name": "odoo", "type": "odoo", "url": "https://mycompany.odoo.com",
               "api_key": "6578616d706c65206a736f6e", "database": "mycompany", **options}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [{k: v for k, v in adapter.items() if v is not None}]}))
    return [p.split(": ", 1)[1] for p in config_problems(path)]


@pytest.mark.parametrize("options,problem", [
    ({"url": "https://mycompany.odoo.com/json/2"},
     "adapters[0].url: Must be the Odoo server's base URL like https://mycompany.odoo.com"),
    ({"url": "https://mycompany.odoo.com/jsonrpc"}, "adapters[0].url: Must be the Odoo server's base URL"),
    ({"url": "mycompany.odoo.com"}, "adapters[0].url: Must be an http:// or https:// URL with a host."),
    ({"api": "xmlrpc"}, "adapters[0].api: Must be json2 (Odoo 19 and later) or jsonrpc (Odoo 17 and 18)."),
    ({"api": "jsonrpc"}, "adapters[0].uid: Required with api: jsonrpc: uid (the id of the API key's user) "
                         "or login"),
    ({"api": "jsonrpc", "uid": 2, "login": "bot"}, "adapters[0].login: Give uid or login, not both"),
    ({"login": "bot"}, "adapters[0].login: Only with api: jsonrpc"),
    ({"api": "jsonrpc", "uid": 2, "database": None}, "adapters[0].database: Required with api: jsonrpc"),
    ({"api": "jsonrpc", "uid": "2"}, "adapters[0].uid: Not a valid integer."),
    ({"api": "jsonrpc", "uid": 0}, "adapters[0].uid: Must be the user's id, a whole number of at least 1."),
    ({"uid": 2}, "adapters[0].uid: Only with api: jsonrpc"),
    ({"api_key": None}, "adapters[0].api_key: Missing data for required field."),
    ({"quantity": "reserved_quantity"}, "adapters[0].quantity: Must be one of: free_qty, qty_available, "
                                        "virtual_available (free_qty: on hand minus reserved)."),
    ({"product_field": "Default Code"}, "adapters[0].product_field: Must be a field name of product.product"),
    ({"auth": {"type": "bearer", "token": "x"}}, "adapters[0].auth: unknown key"),  # the preset sets auth
])
def test_a_bad_key_is_reported_with_its_name(tmp_path, options, problem):
    found = problems_of(tmp_path, **options)
    assert [p for p in found if p.startswith(problem)], found


def test_an_api_key_with_blanks_is_reported_without_its_value(tmp_path):
    (problem,) = problems_of(tmp_path, api_key=" s3cr3tvalue ")
    assert problem.startswith("adapters[0].api_key: Must be the API key as Odoo shows it")
    assert "s3cr3tvalue" not in problem


# -- the example --------------------------------------------------------------------------------

EXAMPLE_ENV = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789",
               "ODOO_URL": "https://mycompany.odoo.com", "ODOO_API_KEY": "example-odoo-key-4242"}


def test_the_example_passes_check_config_with_its_variables_and_shows_no_secret():
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=EXAMPLE_ENV)
    assert result.exit_code == 0, result.output
    assert "example-odoo-key-4242" not in result.output


@pytest.mark.slow
def test_the_example_config_serves_odoo_atp_end_to_end(server, tmp_path):
    config = tmp_path / "odoo"
    shutil.copytree(EXAMPLE, config)
    server.api_key = EXAMPLE_ENV["ODOO_API_KEY"]
    server.stock = {("1000061", 8): 10.0, ("10000211", 19): 3.0}
    env = {**EXAMPLE_ENV, "ODOO_URL": server.url}
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
        server.api_key = "rotated-key-0001"  # the key the bridge holds is no longer valid
        degraded = bridge.post({"products": [{"product_id": "p1", "external_identifier": "1000061"}],
                                "fulfillment_locations": ["US01"]},
                               headers={"Authorization": EXAMPLE_ENV["NEWSTORE_API_KEY"]})
        assert degraded.headers.get("X-ATP-Degraded") == "error:odoo"
        assert [a["atp"] for a in degraded.json()["availabilities"]] == [0]
    assert sorted(a["location"] for a in server.asked) == [8, 19]  # the example's location_map, as ints
    assert all(a["products"] == ["1000061", "10000211"] for a in server.asked)
    assert server.search_calls()[0].headers["x-odoo-database"] == "mycompany"
    output = log.read_text()
    assert "HTTP 401" in output and "Invalid apikey" in output
    assert EXAMPLE_ENV["ODOO_API_KEY"] not in output


# -- the stand-in answers in the documented shapes ----------------------------------------------

def test_the_stand_in_answers_as_the_fixtures_show(server):
    import requests

    from tests.vendors.odoo import fixture
    server.products = {"FURN_0269": 25, "FURN_7800": 31}
    server.stock = {("FURN_0269", 8): 12.0}
    kwargs = {"fields": ["default_code", "free_qty"], "context": {"location": 8}}
    domain = [["default_code", "in", ["FURN_0269", "FURN_7800"]]]
    json2 = requests.post(server.url + JSON2_PATH, json={"domain": domain, **kwargs}, timeout=5,
                          headers={"Authorization": f"bearer {server.api_key}"})
    assert (json2.status_code, json2.json()) == (200, fixture("json2_search_read_response.json"))
    rpc = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
           "args": [server.database, server.uid, server.api_key, "product.product", "search_read",
                    [[["default_code", "in", ["FURN_0269"]]]], kwargs]}}
    assert requests.post(server.url + "/jsonrpc", json=rpc, timeout=5).json() == fixture("jsonrpc_result.json")
    rpc["params"]["args"][2] = "wrong"
    denied = requests.post(server.url + "/jsonrpc", json=rpc, timeout=5)
    expected = fixture("jsonrpc_error.json")
    assert denied.status_code == 200
    assert {**denied.json(), "error": {**denied.json()["error"], "data": {}}} == {**expected, "error": {
        **expected["error"], "data": {}}}
    got, want = denied.json()["error"]["data"], expected["error"]["data"]
    assert {k: v for k, v in got.items() if k != "debug"} == {k: v for k, v in want.items() if k != "debug"}
    bad = requests.post(server.url + JSON2_PATH, json={"domain": domain, **kwargs}, timeout=5,
                        headers={"Authorization": "bearer wrong"})
    assert (bad.status_code, bad.json()) == (401, fixture("json2_error_401.json"))
