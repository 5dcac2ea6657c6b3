"""type: d365-inventory-visibility against its stand-in (tests/vendors/d365.py), through
the real RestAdapter machinery; the engine pieces it needed (extract.ignore_case, the
split filter) on their own; and a real `atp-bridge serve` with deploy/examples/."""
import logging
import shutil
import time
from pathlib import Path

import pytest
from marshmallow import ValidationError

from atp_bridge.adapters.engine.connectors.d365 import InventoryVisibility
from atp_bridge.adapters.engine.templates import CallTemplate
from atp_bridge.adapters.idmaps import IdMaps
from atp_bridge.config import load_config
from atp_bridge.config_types import AdapterSpec
from atp_bridge.errors import AdapterError, ConfigError
from tests.adapters.conftest import batch
from tests.serve import BridgeProcess
from tests.vendors.d365 import AAD_SCOPE, CLIENT, ENVIRONMENT, IV_SCOPE, TENANT, InventoryVisibilityServer

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "d365-inventory-visibility"
HOSTILE = ["it's", 'say "hi"', "a\\b", "x,y", "ünïcødé", "{{ 7*7 }}", "a&b=c"]


@pytest.fixture
def iv():
    with InventoryVisibilityServer() as server:
        yield server
        assert server.handler_errors == []


def own_keys(iv: InventoryVisibilityServer) -> dict:
    return {"url": iv.url, "environment_id": iv.environment, "organization_id": iv.organization,
            "tenant_id": TENANT, "client_id": CLIENT[0], "client_secret": CLIENT[1],
            "aad_token_url": iv.aad_token_url, "security_token_url": iv.security_token_url}


@pytest.fixture
def connector(iv):
    """``connector(**options)`` -> the adapter loaded through its own schema, as
    the config loader does; closed after the test."""
    made = []

    def make(**options):
        options = InventoryVisibility.options_schema().load({**own_keys(iv), **options})
        adapter = InventoryVisibility.from_config(AdapterSpec("iv", "d365-inventory-visibility", options=options))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def queries(iv):
    return iv.requests(iv.query_path)


# -- the documented request ----------------------------------------------------

def test_one_exact_query_with_the_documented_body_after_the_two_step_token(iv, connector):
    iv.put("M0030", "1", "13", 20, colour="White")
    iv.put("M0030", "1", "13", 3, colour="Black")  # rows of one pair are summed
    iv.put("T-shirt", "2", "21", 7)
    answer = connector().fetch(batch(["M0030", "T-shirt"], ["1/13", "2/21"]))
    assert answer == [23, None, None, 7]
    aad_path = f"/{TENANT}/oauth2/v2.0/token"
    assert [(s.method, s.path) for s in iv.log] == [
        ("POST", aad_path), ("POST", "/token"), ("POST", "/securityservice/token"), ("POST", iv.query_path)]
    aad, general, gateway, query = iv.log
    assert aad.headers["content-type"] == "application/x-www-form-urlencoded"
    assert aad.form() == {"client_id": CLIENT[0], "client_secret": CLIENT[1],
                          "grant_type": "client_credentials", "scope": AAD_SCOPE}
    exchange = {"grant_type": "client_credentials", "client_assertion_type": "aad_app",
                "client_assertion": "aad-1", "scope": IV_SCOPE, "context": ENVIRONMENT,
                "context_type": "finops-env"}
    for hop in (general, gateway):  # the 307 is answered by the same POST
        assert hop.json() == exchange
        assert (hop.headers["api-version"], hop.headers["content-type"]) == ("1.0", "application/json")
    assert (query.headers["authorization"], query.headers["api-version"]) == ("Bearer iv-1", "1.0")
    assert query.headers["content-type"] == "application/json"
    assert query.json() == {
        "filters": {"organizationId": ["usmf"], "productId": ["M0030", "T-shirt"],
                    "dimensions": ["siteId", "locationId"], "values": [["1", "13"], ["2", "21"]]},
        "groupByValues": [], "returnNegative": True}


def test_the_token_urls_default_to_microsofts_public_cloud():
    options = InventoryVisibility.options_schema().load({
        "url": "https://inventoryservice.wus-il301.gateway.prod.island.powerapps.com",
        "environment_id": ENVIRONMENT, "organization_id": "usmf", "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "c", "client_secret": "s"})
    auth = options["auth"]
    assert auth.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert (auth.scope, auth.exchange.url) == (AAD_SCOPE, "https://securityservice.operations365.dynamics.com/token")
    assert options["wire"].url + "/api/environment/x" == \
        "https://inventoryservice.wus-il301.gateway.prod.island.powerapps.com/api/environment/x"


@pytest.mark.parametrize("case", [
    {"productId": "productId", "siteid": "siteid", "locationid": "locationid"},  # the documented answer
    {"productId": "ProductId", "siteid": "SiteId", "locationid": "LocationId"},
    {"productId": "PRODUCTID", "siteid": "siteId", "locationid": "locationId"},
])
def test_the_answers_keys_match_whatever_their_case(iv, connector, case):
    iv.key_case = case
    iv.put("M0030", "1", "13", 5)
    assert connector().fetch(batch(["M0030"], ["1/13"])) == [5]


@pytest.mark.parametrize("quantity,measure,expected", [
    ("iv.totalavailable", ("iv", "totalavailable"), 9),
    ("fno.AvailPhysical", ("fno", "availphysical"), 9),             # written in any case
    ("iv.total ordered", ("iv", "total ordered"), 9),                # a measure with a space
    ("@iv.@allocated", ("@iv", "@allocated"), 9),                    # the documented "@iv" source
])
def test_quantity_picks_the_data_source_and_measure(iv, connector, quantity, measure, expected):
    iv.put("M0030", "1", "13", expected, measure=measure)
    assert connector(quantity=quantity).fetch(batch(["M0030"], ["1/13"])) == [expected]


def test_the_default_quantity_is_available_to_reserve_not_the_other_measures(iv, connector):
    iv.put("M0030", "1", "13", 4)  # the documented row: totalavailable 20, fno.availordered 20
    assert connector().fetch(batch(["M0030"], ["1/13"])) == [4]


def test_numeric_strings_and_negative_quantities_are_numbers(iv, connector):
    iv.put("A", "1", "13", "12.000")
    iv.put("B", "1", "13", -2)  # oversold: known, and the bridge clamps it to 0
    assert connector().fetch(batch(["A", "B"], ["1/13"])) == [12.0, -2]


def test_ids_with_quotes_and_special_characters_travel_intact(iv, connector):
    sites = ["s'1/l\"1", "s 2/l/2"]  # the first "/" splits; the location may hold more
    for i, product in enumerate(HOSTILE):
        iv.put(product, "s'1", 'l"1', i + 1)
        iv.put(product, "s 2", "l/2", 10 * (i + 1))
    answer = connector().fetch(batch(HOSTILE, sites))
    assert answer == [v for i in range(len(HOSTILE)) for v in (i + 1, 10 * (i + 1))]
    body = queries(iv)[0].json()
    assert body["filters"]["productId"] == HOSTILE
    assert body["filters"]["values"] == [["s'1", 'l"1'], ["s 2", "l/2"]]


def test_mapped_ids_are_asked_once_and_an_unmapped_location_is_left_out(iv, connector):
    iv.put("M1", "1", "13", 5)
    adapter = connector()
    # two NewStore ids of one product and of one location; "store-x" has no mapping
    adapter.id_maps = IdMaps(products={"ns-1": "M1", "ns-2": "M1"},
                             locations={"store-a": "1/13", "store-b": "1/13"})
    answer = adapter.fetch(batch(["ns-1", "ns-2", "m1"], ["store-a", "store-b", "store-x"]))
    assert answer == [5, 5, None, 5, 5, None, None, None, None]
    filters = queries(iv)[0].json()["filters"]
    assert filters["productId"] == ["M1", "m1"]  # distinct, case kept
    assert filters["values"] == [["1", "13"]]


def test_a_large_batch_is_cut_into_calls_along_the_products(iv, connector):
    products = [f"P{i}" for i in range(5)]
    for p in products:
        iv.put(p, "1", "13", 1)
    assert connector(batch_size=4).fetch(batch(products, ["1/13", "2/21"])) == [1, None] * 5
    # concurrent calls: in any order
    assert sorted(q.json()["filters"]["productId"] for q in queries(iv)) == [["P0", "P1"], ["P2", "P3"], ["P4"]]


# -- the token --------------------------------------------------------------------

def test_one_token_chain_serves_many_requests(iv, connector):
    iv.put("A", "1", "13", 2)
    adapter = connector()
    for _ in range(3):
        assert adapter.fetch(batch(["A"], ["1/13"])) == [2]
    assert [len(iv.requests(p)) for p in (f"/{TENANT}/oauth2/v2.0/token", "/token", "/securityservice/token")] \
        == [1, 1, 1]
    assert [q.headers["authorization"] for q in queries(iv)] == ["Bearer iv-1"] * 3
    assert adapter.stats()["token_fetches"] == 1


def test_a_401_fetches_both_tokens_again_once_and_retries(iv, connector):
    iv.put("A", "1", "13", 2)
    adapter = connector()
    assert adapter.fetch(batch(["A"], ["1/13"])) == [2]
    iv.revoke()  # the IV token dies early
    assert adapter.fetch(batch(["A"], ["1/13"])) == [2]
    assert [q.headers["authorization"] for q in queries(iv)] == ["Bearer iv-1", "Bearer iv-1", "Bearer iv-2"]
    assert [s.json()["client_assertion"] for s in iv.requests("/securityservice/token")] == ["aad-1", "aad-2"]


def test_a_token_the_service_keeps_refusing_is_an_auth_error_after_one_refresh(iv, connector):
    iv.refuse_tokens = True
    with pytest.raises(AdapterError, match=r"HTTP 401 \(check the adapter's auth\)"):
        connector().fetch(batch(["A"], ["1/13"]))
    assert (len(queries(iv)), len(iv.requests("/securityservice/token"))) == (2, 2)


def test_the_chain_is_fetched_again_shortly_before_the_iv_token_expires(iv, connector):
    iv.put("A", "1", "13", 2)
    iv.iv_lifetime = 1.0  # the security service's lifetime counts (Entra's is 3599 s): usable 0.5 s
    adapter = connector()
    adapter.fetch(batch(["A"], ["1/13"]))
    time.sleep(0.7)
    adapter.fetch(batch(["A"], ["1/13"]))
    assert [q.headers["authorization"] for q in queries(iv)] == ["Bearer iv-1", "Bearer iv-2"]


def test_a_wrong_client_secret_is_entras_message_without_the_secret(iv, connector):
    with pytest.raises(AdapterError) as exc:
        connector(client_secret="wrong-secret-0004").fetch(batch(["A"], ["1/13"]))
    message = str(exc.value)
    assert "auth: token endpoint answered HTTP 401" in message and "AADSTS7000215" in message
    assert "wrong-secret-0004" not in message and queries(iv) == []


def test_a_refused_exchange_names_the_gateway_it_was_redirected_to(iv, connector):
    iv.environment = "00000000-0000-4000-8000-000000000000"  # the service knows another environment
    with pytest.raises(AdapterError, match=r"auth: token exchange \(POST http://127\.0\.0\.1:\d+/securityservice"
                                           r"/token\) answered HTTP 400"):
        connector(environment_id=ENVIRONMENT).fetch(batch(["A"], ["1/13"]))


def test_the_entra_token_never_shows_even_when_the_service_quotes_it(iv, connector):
    iv.echo_assertion = True
    with pytest.raises(AdapterError) as exc:
        connector().fetch(batch(["A"], ["1/13"]))
    assert "cannot use assertion ***" in str(exc.value) and "aad-1" not in str(exc.value)


def test_the_iv_token_never_shows_in_errors_or_logs(iv, connector, caplog):
    iv.respond = lambda erp, seen: (500, {"message": f"failed for {seen.headers['authorization']}"})
    adapter = connector(retries=0)
    with caplog.at_level(logging.DEBUG), pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], ["1/13"]))
    assert "HTTP 500: " in str(exc.value) and "failed for Bearer ***" in str(exc.value)
    for text in (str(exc.value), adapter.stats()["last_error"], caplog.text, repr(adapter), repr(adapter.auth)):
        assert "iv-1" not in text and "aad-1" not in text and CLIENT[1] not in text


# -- the service's answers ------------------------------------------------------------

def test_the_services_400_message_surfaces(iv, connector):
    with pytest.raises(AdapterError, match=r'HTTP 400: \{"statusCode":400,"message":"organizationId must be'):
        connector(organization_id="USMF").fetch(batch(["A"], ["1/13"]))


def test_a_429_is_retried_after_retry_after_when_it_fits(iv, connector):
    iv.put("A", "1", "13", 2)
    iv.throttle(1, retry_after="1")
    assert connector().fetch(batch(["A"], ["1/13"], seconds=5)) == [2]
    assert len(queries(iv)) == 2


def test_a_429_whose_retry_after_passes_the_deadline_is_an_error_at_once(iv, connector):
    iv.throttle(1, retry_after="30")
    started = time.monotonic()
    with pytest.raises(AdapterError, match=r"HTTP 429 \(rate limited; Retry-After did not fit"):
        connector().fetch(batch(["A"], ["1/13"], seconds=3))
    assert time.monotonic() - started < 2.5 and len(queries(iv)) == 1


def test_an_answer_that_is_not_json_is_an_error(iv, connector):
    iv.mode = "garbage"
    with pytest.raises(AdapterError, match="answer is not JSON"):
        connector().fetch(batch(["A"], ["1/13"]))


# -- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("quantity", "availabletoreserve", "Must be <data source>.<measure>"),
    ("environment_id", "env/../x", "Must be the Lifecycle Services environment ID"),
    ("tenant_id", "a/b", "Must be the Microsoft Entra tenant ID"),
    ("url", "inventoryservice.example", "Must be an http:// or https:// URL"),
    ("aad_token_url", "ftp://x", "Must be an http:// or https:// URL"),
])
def test_a_bad_key_is_named_by_check_config(iv, config_file, key, value, message):
    path = config_file({"adapters": [{"name": "iv", "type": "d365-inventory-visibility",
                                      **own_keys(iv), key: value}]})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"adapters[0].{key}: {message}" in str(exc.value)


def test_a_missing_key_is_named_and_the_rest_keys_are_refused(iv, config_file):
    keys = {k: v for k, v in own_keys(iv).items() if k != "client_secret"}
    path = config_file({"adapters": [{"name": "iv", "type": "d365-inventory-visibility", **keys,
                                      "path": "/elsewhere"}]})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "adapters[0].client_secret: Missing data for required field." in str(exc.value)
    assert "adapters[0].path: unknown key" in str(exc.value)


# -- the engine pieces, in type: rest -------------------------------------------------------

def mixed_case(erp, seen):
    return 200, {"Items": [{"SKU": "A", "Store": {"Id": "S1"}, "Qty": 3},
                           {"sku": "B", "STORE": {"ID": "S1"}, "qty": "4.5"}]}


@pytest.mark.parametrize("ignore_case,expected", [(True, [3, 4.5]), (False, [None, None])])
def test_extract_ignore_case_matches_keys_whatever_their_case(erp, rest, ignore_case, expected):
    erp.respond = mixed_case
    adapter = rest(path="/stock", extract={"rows": "items", "product": "Sku", "location": "store.id",
                                           "atp": "QTY", "ignore_case": ignore_case})
    assert adapter.fetch(batch(["A", "B"], ["S1"])) == expected


def test_extract_ignore_case_lower_cases_what_a_jmespath_expression_sees(erp, rest):
    erp.respond = mixed_case
    adapter = rest(path="/stock", extract={"rows": "items[?qty != `null`]", "product": "sku",
                                           "location": "join('', [store.id])", "atp": "qty",
                                           "ignore_case": True})
    assert adapter.fetch(batch(["A", "B"], ["S1"])) == [3, 4.5]


def test_the_split_filter_turns_composite_ids_into_their_parts():
    t = CallTemplate(path="/{{ (location | split('/'))[0] }}", body={
        "pairs": "{{ locations | map('split', '/', 1) | list }}", "first": "{{ (location | split)[0] }}"})
    parts = t.render(t.context([], ["1/11", "2/a/b"], location="x y/z"))
    assert parts["path"] == "/x%20y"
    assert parts["body"] == {"pairs": [["1", "11"], ["2", "a/b"]], "first": "x"}


def test_an_exchange_template_with_an_unknown_name_is_refused_at_load():
    from atp_bridge.adapters.rest_options import RestOptionsSchema
    with pytest.raises(ValidationError) as exc:
        RestOptionsSchema().load({"url": "http://erp", "auth": {
            "type": "oauth2_client_credentials", "token_url": "http://erp/token", "client_id": "c",
            "client_secret": "s", "exchange": {"url": "http://erp/x", "body": {"a": "{{ products }}"}}}})
    assert exc.value.messages == {"auth": {"exchange": {"body.a": [
        "unknown name 'products' in the template (a call has: token)"]}}}


# -- end to end ---------------------------------------------------------------------------

@pytest.mark.slow
def test_the_example_serves_atp_from_the_stand_in(iv, tmp_path):
    iv.put("SKU-1", "1", "11", 7, colour="Red")
    iv.put("SKU-1", "1", "11", 2, colour="Blue")
    iv.put("SKU-1", "2", "21", -3)
    iv.put("SKU-2", "1", "12", "5.000")
    config = tmp_path / "example"
    shutil.copytree(EXAMPLE, config)
    api_key = "example-newstore-key-0123456789"
    env = {"NEWSTORE_API_KEY": api_key, "D365_IV_URL": iv.url, "D365_ENVIRONMENT_ID": iv.environment,
           "D365_ORGANIZATION_ID": iv.organization, "AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT[0],
           "AZURE_CLIENT_SECRET": CLIENT[1], "D365_AAD_AUTHORITY": iv.url,
           "D365_SECURITY_TOKEN_URL": iv.security_token_url}
    log = tmp_path / "serve.log"
    with BridgeProcess(config, env=env, output=log) as bridge:
        bridge.wait_ready()
        resp = bridge.post({"products": [{"product_id": "p1", "external_identifier": "SKU-1"},
                                         {"product_id": "p2", "external_identifier": "SKU-2"}],
                            "fulfillment_locations": ["store-seattle", "store-portland", "dc-west"]},
                           headers={"Authorization": api_key})
    assert resp.status_code == 200, log.read_text()
    assert "X-ATP-Degraded" not in resp.headers
    got = {(a["product_id"], a["fulfillment_location"]): a["atp"] for a in resp.json()["availabilities"]}
    assert got == {("p1", "store-seattle"): 9, ("p1", "store-portland"): 0, ("p1", "dc-west"): 0,
                   ("p2", "store-seattle"): 0, ("p2", "store-portland"): 5, ("p2", "dc-west"): 0}
    filters = queries(iv)[0].json()["filters"]
    assert filters["values"] == [["1", "11"], ["1", "12"], ["2", "21"]]
    assert filters["productId"] == ["SKU-1", "SKU-2"]
    assert CLIENT[1] not in log.read_text()
