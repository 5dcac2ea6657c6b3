"""``type: netsuite`` (SuiteQL over REST, OAuth 2.0 M2M with a signed JWT) against
its loopback stand-in (tests/vendors/netsuite.py), through the real REST machinery."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml
from click.testing import CliRunner

from atp_bridge.adapters.engine.connectors.netsuite import DEFAULT_QUERY, NetSuite, SUITEQL_PATH, TOKEN_PATH
from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError
from tests.adapters.conftest import batch
from tests.adapters.connectors.conftest import config_problems
from tests.serve import BridgeProcess
from tests.vendors.netsuite import NetSuite as NetSuiteStandIn
from tests.vendors.netsuite import public_key, write_key

HOSTILE = ["it's", "''", "x') OR 1=1 --", 'say "hi"', "a, b", "100%", "line\nbreak", "{products}",
           "{{ 7*7 }}", "né/ü?#&"]
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "netsuite"


@pytest.fixture
def keys(tmp_path):
    """Private keys made for this test: {kind: path}."""
    return {kind: write_key(tmp_path / f"{kind}.pem", kind) for kind in ("rsa", "ec", "ec384")}


@pytest.fixture
def ns(keys):
    """The stand-in, with a certificate (public key) mapped for each key: kid cert-<kind>."""
    with NetSuiteStandIn(certificates={f"cert-{k}": public_key(p) for k, p in keys.items()}) as server:
        yield server


@pytest.fixture
def netsuite(ns, keys, built):
    """``netsuite(**options)`` -> a NetSuite adapter loaded through its schema
    (``key``: which key signs), closed after the test."""
    def make(key="rsa", base_dir=".", **options):
        options = {"account_id": "1234567_SB1", "url": ns.url, "client_id": ns.client_id,
                   "certificate_id": f"cert-{key}", "private_key": str(keys[key]), **options}
        return built(NetSuite, "netsuite", "ns", options, base_dir=base_dir)

    return make


def suiteql(products, locations, query=DEFAULT_QUERY):
    def lst(ids):
        return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    return query.replace("{products}", lst(products)).replace("{locations}", lst(locations))


# -- the documented request ------------------------------------------------------

def test_one_batch_is_one_documented_suiteql_call_after_one_signed_token_request(ns, netsuite):
    ns.stock = {("SKU-1", "1"): "12", ("SKU-1", "2"): "0", ("SKU-2", "1"): "3.5"}
    answer = netsuite().fetch(batch(["SKU-1", "SKU-2", "SKU-3"], ["1", "2"]))
    assert answer == [12, 0, 3.5, None, None, None]
    (token_call,) = ns.requests(TOKEN_PATH)
    assert token_call.method == "POST"
    assert token_call.headers["content-type"] == "application/x-www-form-urlencoded"
    form = token_call.form()
    assert sorted(form) == ["client_assertion", "client_assertion_type", "grant_type"]
    assert (form["grant_type"], form["client_assertion_type"]) == (
        "client_credentials", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    (signed,) = ns.assertions
    assert signed["header"] == {"alg": "PS256", "typ": "JWT", "kid": "cert-rsa"}
    claims = signed["claims"]
    assert {k: claims[k] for k in ("iss", "aud", "scope")} == {
        "iss": ns.client_id, "aud": f"{ns.url}/services/rest/auth/oauth2/v1/token", "scope": "rest_webservices"}
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 60
    (call,) = ns.suiteql_calls()
    assert (call.method, call.path) == ("POST", SUITEQL_PATH)
    assert parse_qs(call.target.partition("?")[2]) == {"limit": ["1000"], "offset": ["0"]}
    assert call.headers["prefer"] == "transient"
    assert call.headers["content-type"] == "application/json"
    assert call.headers["authorization"] == f"Bearer {next(iter(ns.tokens))}"
    assert call.json() == {"q": suiteql(["SKU-1", "SKU-2", "SKU-3"], ["1", "2"])}
    assert ns.refusals == []


@pytest.mark.parametrize("key,alg", [("ec", "ES256"), ("ec384", "ES384")])
def test_an_ec_key_signs_with_the_es_algorithm_of_its_curve(ns, netsuite, key, alg):
    ns.stock = {("A", "1"): "4"}
    assert netsuite(key=key).fetch(batch(["A"], ["1"])) == [4]
    assert [a["header"]["alg"] for a in ns.assertions] == [alg]
    assert ns.assertions[0]["header"]["kid"] == f"cert-{key}"


def test_suiteql_string_values_are_numbers(ns, netsuite):
    ns.stock = {("A", "1"): "7", ("A", "2"): "12.000", ("A", "3"): "-2", ("A", "4"): "0.5"}
    assert netsuite().fetch(batch(["A"], ["1", "2", "3", "4"])) == [7, 12, -2, 0.5]  # the bridge clamps, the adapter reports


def test_rows_of_one_pair_are_added_and_a_null_quantity_is_unknown(ns, netsuite):
    ns.stock = {("A", "1"): ["3", "4.5"], ("A", "2"): None, ("B", "1"): "1"}
    assert netsuite().fetch(batch(["A", "B"], ["1", "2"])) == [7.5, None, 1, None]


def test_the_default_url_is_the_accounts_own_host_for_token_and_query():
    options = NetSuite.options_schema().load({"account_id": "1234567_SB1", "client_id": "c",
                                              "certificate_id": "k", "private_key": "ns.pem"})
    assert options["auth"].token_url == "https://1234567-sb1.suitetalk.api.netsuite.com" + TOKEN_PATH
    call = options["wire"].encode(options["wire"].calls(batch(["A"], ["1"]), 500)[0],
                                  options["wire"].paginator.first())
    assert call["url"] == "https://1234567-sb1.suitetalk.api.netsuite.com" + SUITEQL_PATH
    assert call["params"] == {"limit": "1000", "offset": "0"}
    assert options["url"] == NetSuite.options_schema().load(
        {"account_id": "1234567_SB1", "url": "", "client_id": "c", "certificate_id": "k",
         "private_key": "ns.pem"})["url"]


def test_the_users_own_headers_keep_prefer_transient(ns, netsuite):
    ns.stock = {("A", "1"): "1"}
    assert netsuite(headers={"X-Trace": "t-1"}).fetch(batch(["A"], ["1"])) == [1]
    (call,) = ns.suiteql_calls()
    assert (call.headers["prefer"], call.headers["x-trace"]) == ("transient", "t-1")


# -- ids are data -----------------------------------------------------------------

@pytest.mark.parametrize("product", HOSTILE)
def test_an_id_with_quotes_or_sql_stays_one_string_literal(ns, netsuite, product):
    ns.stock = {(product, "1"): "5", ("B", "1"): "2"}
    assert netsuite().fetch(batch([product, "B"], ["1"])) == [5, 2]
    assert ns.asked == [{"products": sorted([product, "B"]), "locations": ["1"], "limit": 1000, "offset": 0}]
    assert ns.suiteql_calls()[0].json() == {"q": suiteql([product, "B"], ["1"])}


def test_a_mapped_composite_location_is_one_literal_too(ns, netsuite):
    ns.stock = {("A", "WH'1/0001"): "9"}
    assert netsuite().fetch(batch(["A"], ["WH'1/0001"])) == [9]
    assert ns.asked[0]["locations"] == ["WH'1/0001"]


def test_a_custom_query_fills_its_placeholders_and_keeps_the_rest_verbatim(ns, netsuite):
    query = ("SELECT i.itemid AS product, b.location AS location, b.quantityavailable AS atp "
             "/* {{ 7*7 }} {% raw %} */ FROM inventorybalance b JOIN item i ON i.id = b.item "
             "WHERE i.itemid IN ({products}) AND b.location IN ({locations}) AND i.itemid NOT IN ({products})")
    ns.query_template = query
    ns.stock = {("A", "1"): "6"}
    assert netsuite(query=query).fetch(batch(["A"], ["1"])) == [6]
    assert ns.suiteql_calls()[0].json() == {"q": suiteql(["A"], ["1"], query)}


# -- paging, token, errors ------------------------------------------------------------

def test_more_rows_than_a_page_are_read_page_by_page(ns, netsuite):
    # one call: 1000 pairs, 3 rows (bins) each; a page ends inside a pair's rows
    products = [f"P{i:04d}" for i in range(500)]
    ns.stock = {(p, loc): [str(i % 7 + 1), "1", "0.5"] for i, p in enumerate(products) for loc in ("1", "2")}
    answer = netsuite(batch_size=1000).fetch(batch(products, ["1", "2"]))
    assert answer == [i % 7 + 2.5 for i in range(500) for _ in range(2)]
    assert [(a["limit"], a["offset"]) for a in ns.asked] == [(1000, 0), (1000, 1000), (1000, 2000)]
    assert len(ns.requests(TOKEN_PATH)) == 1


def test_a_batch_is_cut_into_calls_of_at_most_batch_size_pairs(ns, netsuite):
    products = [f"P{i:04d}" for i in range(9)]
    ns.stock = {(p, "1"): "1" for p in products}
    assert netsuite(batch_size=4).fetch(batch(products, ["1", "2"])) == [1, None] * 9
    assert sorted(len(a["products"]) for a in ns.asked) == [1, 2, 2, 2, 2]


def test_more_than_1000_products_in_one_call_is_a_config_problem(tmp_path):
    (tmp_path / "keys").mkdir()
    write_key(tmp_path / "keys" / "ns.pem")
    path = ns_config(tmp_path, batch_size=1001)
    assert config_problems(path) == [f"{path}: adapters[0].batch_size: At most 1000 for NetSuite: one SuiteQL "
                                 f"IN list holds at most 1000 ids."]


def test_the_token_is_reused_and_fetched_again_once_after_a_401(ns, netsuite):
    ns.stock = {("A", "1"): "2"}
    adapter = netsuite()
    assert adapter.fetch(batch(["A"], ["1"])) == [2]
    assert adapter.fetch(batch(["A"], ["1"])) == [2]
    assert len(ns.requests(TOKEN_PATH)) == 1
    first = set(ns.tokens)
    ns.revoke_tokens()  # NetSuite forgot the token early
    assert adapter.fetch(batch(["A"], ["1"])) == [2]
    assert len(ns.requests(TOKEN_PATH)) == 2 and len(ns.assertions) == 2
    assert [c.headers["authorization"][7:] in first for c in ns.suiteql_calls()] == [True, True, True, False]


def test_a_token_that_keeps_failing_is_netsuites_invalid_login_message(ns, netsuite):
    ns.stock = {("A", "1"): "2"}
    ns.refuse_tokens = True  # every token it issues is refused at once
    with pytest.raises(AdapterError, match=r"suiteql: HTTP 401 \(check the adapter's auth\): "
                                           r"Invalid login attempt\. For more details"):
        netsuite().fetch(batch(["A"], ["1"]))
    assert len(ns.requests(TOKEN_PATH)) == 2 and len(ns.suiteql_calls()) == 2


def test_an_unknown_certificate_is_a_token_error_without_the_assertion(ns, netsuite):
    adapter = netsuite(certificate_id="cert-revoked")
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch(["A"], ["1"]))
    message = str(exc.value)
    assert 'auth: token endpoint answered HTTP 400: {"error":"invalid_grant"}' in message
    assert ns.refusals == ["unknown kid 'cert-revoked'"] and ns.suiteql_calls() == []
    assertion = ns.requests(TOKEN_PATH)[0].form()["client_assertion"]
    assert assertion not in message and assertion not in adapter.stats()["last_error"]


def test_a_key_that_is_not_the_certificates_is_refused_by_its_signature(ns, netsuite, keys):
    adapter = netsuite(key="rsa", certificate_id="cert-ec")  # signed by the RSA key, kid of the EC one
    with pytest.raises(AdapterError, match="invalid_grant"):
        adapter.fetch(batch(["A"], ["1"]))
    assert ns.refusals and ns.refusals[0].startswith("assertion: ")


def test_a_query_netsuite_refuses_surfaces_its_error_detail(ns, netsuite):
    ns.query_template = "SELECT nothing FROM dual WHERE x IN ({products})"
    with pytest.raises(AdapterError) as exc:
        netsuite().fetch(batch(["A"], ["1"]))
    assert "HTTP 400: Invalid search query. Detailed unprocessed description follows. Search error " \
           "occurred: the query is not the one this account runs." in str(exc.value)


def test_a_429_is_retried_after_retry_after_within_the_deadline(ns, netsuite):
    ns.stock = {("A", "1"): "3"}
    ns.throttle(1, retry_after="1")
    started = time.monotonic()
    assert netsuite().fetch(batch(["A"], ["1"], seconds=5)) == [3]
    assert time.monotonic() - started >= 1.0 and len(ns.suiteql_calls()) == 2


def test_a_429_whose_retry_after_passes_the_deadline_fails_with_netsuites_detail(ns, netsuite):
    ns.throttle(1, retry_after="30")
    with pytest.raises(AdapterError) as exc:
        netsuite().fetch(batch(["A"], ["1"], seconds=2))
    assert "HTTP 429 (rate limited; Retry-After did not fit before the deadline): The request could " \
           "not be processed because the account's concurrency limit was reached" in str(exc.value)
    assert len(ns.suiteql_calls()) == 1


# -- check-config -----------------------------------------------------------------------

def ns_config(tmp_path, **options) -> Path:
    adapter = {"name": "ns", "type": "netsuite", "account_id": "1234567", "client_id": "c",
               "certificate_id": "k", "private_key": "keys/ns.pem", **options}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"adapters": [adapter]}))
    return path


def test_a_missing_key_file_is_reported_with_file_and_key(tmp_path):
    path = ns_config(tmp_path)
    assert config_problems(path) == [f"{path}: adapters[0].private_key: no such file {tmp_path}/keys/ns.pem"]


def test_the_key_file_is_found_relative_to_the_config_directory(tmp_path):
    (tmp_path / "keys").mkdir()
    write_key(tmp_path / "keys" / "ns.pem", "ec")
    spec = load_config(ns_config(tmp_path)).adapters[0]
    adapter = NetSuite.from_config(spec)
    try:
        assert adapter.auth._signing[1] == "ES256"
    finally:
        adapter.close()


def test_a_file_that_is_no_key_is_reported_without_its_contents(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ns.pem").write_text("-----BEGIN CERTIFICATE-----\nTOP-SECRET-LOOKING\n")
    (problem,) = config_problems(ns_config(tmp_path))
    assert problem.endswith("adapters[0].private_key: " + str(tmp_path / "keys" / "ns.pem") +
                            " holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")
    assert "TOP-SECRET-LOOKING" not in problem


@pytest.mark.parametrize("query,problem", [
    ("SELECT 1 FROM item WHERE itemid IN ({product})", "Unknown placeholder {product}"),
    ("SELECT itemid AS product FROM item", "Must use {products}"),
])
def test_a_query_without_its_placeholders_is_reported_at_its_key(tmp_path, query, problem):
    (tmp_path / "keys").mkdir()
    write_key(tmp_path / "keys" / "ns.pem")
    path = ns_config(tmp_path, query=query)
    (found,) = config_problems(path)
    assert found.startswith(f"{path}: adapters[0].query: {problem}")


# -- the example -----------------------------------------------------------------------

EXAMPLE_ENV = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789", "NETSUITE_ACCOUNT_ID": "1234567",
               "NETSUITE_CLIENT_ID": "ns-client-0001", "NETSUITE_CERTIFICATE_ID": "cert-rsa"}


def test_the_example_passes_check_config_with_its_variables_and_a_key(keys):
    env = {**EXAMPLE_ENV, "NETSUITE_PRIVATE_KEY_FILE": str(keys["rsa"])}
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=env)
    assert result.exit_code == 0, result.output
    assert "ns-client-0001" not in result.output and "cert-rsa" not in result.output


def test_the_example_without_its_key_file_names_the_file_and_key(tmp_path):
    env = {**EXAMPLE_ENV, "NETSUITE_PRIVATE_KEY_FILE": str(tmp_path / "gone.pem")}
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=env)
    assert result.exit_code == 1
    assert f"{EXAMPLE / 'adapters' / '10-netsuite.yaml'}: private_key: no such file" in result.output



@pytest.mark.slow
def test_the_example_config_serves_netsuite_atp_end_to_end(ns, keys, tmp_path):
    config = tmp_path / "netsuite"
    shutil.copytree(EXAMPLE, config)
    ns.stock = {("1000061", "11"): "14", ("1000061", "12"): "0", ("10000211", "11"): "3"}
    env = {**EXAMPLE_ENV, "NETSUITE_URL": ns.url, "NETSUITE_CLIENT_ID": ns.client_id,
           "NETSUITE_PRIVATE_KEY_FILE": str(keys["rsa"])}
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
    assert ns.asked[0]["locations"] == ["11", "12"]  # the example's location_map
    output = log.read_text()
    for secret in [*ns.tokens, keys["rsa"].read_text().splitlines()[1]]:
        assert secret not in output
