"""The webhook over HTTP (Flask test client): answers, bad input, auth, failure rule."""
import logging

import orjson
import pytest

from atp_bridge import create_app
from tests import fake_adapters
from tests.conftest import SPEC_SAMPLE

KEY = "ns-webhook-key-0123456789abcdef"
VALUES = {"US01": {"1000061": 10, "10000211": 10}, "US02": {"1000061": 0, "10000211": 0},
          "DC01": {"1000061": 25.9}}


def make_client(config_file, **server):
    adapters = server.pop("adapters", [{"name": "stock", "type": "static", "values": VALUES}])
    app = create_app(str(config_file({**server, "adapters": adapters})))
    return app.test_client()


@pytest.fixture
def client(config_file):
    return make_client(config_file)


def rows(resp):
    return [(r["product_id"], r["fulfillment_location"], r["atp"]) for r in resp.get_json()["availabilities"]]


def test_the_spec_sample_is_answered_product_major_in_request_order(client):
    resp = client.post("/availabilities", json=SPEC_SAMPLE)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert "X-ATP-Degraded" not in resp.headers
    assert resp.get_json()["availabilities"][0] == {
        "product_id": "1000061", "external_identifier": "1000061", "fulfillment_location": "US01", "atp": 10}
    assert rows(resp) == [("1000061", "US01", 10), ("1000061", "US02", 0), ("1000061", "DC01", 25),
                          ("10000211", "US01", 10), ("10000211", "US02", 0), ("10000211", "DC01", 0)]


def test_the_webhook_also_answers_under_the_base_path(client):
    resp = client.post("/newstore_api/v0/availabilities", json=SPEC_SAMPLE)
    assert resp.status_code == 200 and len(rows(resp)) == 6


def test_a_custom_base_path_replaces_the_default_one(config_file):
    client = make_client(config_file, base_path="/atp/")
    assert client.post("/atp/availabilities", json=SPEC_SAMPLE).status_code == 200
    assert client.post("/newstore_api/v0/availabilities", json=SPEC_SAMPLE).status_code == 404


def test_unknown_pairs_can_be_left_out(config_file):
    client = make_client(config_file, omit_unknown=True)
    got = rows(client.post("/availabilities", json=SPEC_SAMPLE))
    assert ("10000211", "DC01", 0) not in got and len(got) == 5


def test_match_on_product_id_sends_the_product_id_to_the_adapter(config_file):
    client = make_client(config_file, adapters=[{
        "name": "by-pid", "type": "static", "match_on": "product_id", "values": {"US01": {"P1": 4}}}])
    body = {"products": [{"product_id": "P1", "external_identifier": "E1"}], "fulfillment_locations": ["US01"]}
    assert rows(client.post("/availabilities", json=body)) == [("P1", "US01", 4)]
    assert fake_adapters.CALLS[-1][1].products == ["P1"]


BAD_BODIES = [
    (b"{not json", "(body)", "invalid_json"),
    (b'{"products": "\xff\xfe"}', "(body)", "invalid_json"),
    (b"[]", "(body)", "bad_request"),
    (b"null", "(body)", "bad_request"),
    (b"", "(body)", "invalid_json"),
    (b'{"fulfillment_locations": ["US01"]}', "products", "bad_request"),
    (b'{"products": [], "fulfillment_locations": ["US01"]}', "products", "bad_request"),
    (b'{"products": [{"product_id": "1", "external_identifier": "1"}], "fulfillment_locations": []}',
     "fulfillment_locations", "bad_request"),
    (b'{"products": [{"product_id": "1", "external_identifier": "1"}]}', "fulfillment_locations", "bad_request"),
    (b'{"products": {"product_id": "1"}, "fulfillment_locations": ["US01"]}', "products", "bad_request"),
    (b'{"products": [{"product_id": 1, "external_identifier": "1"}], "fulfillment_locations": ["US01"]}',
     "products.0.product_id", "bad_request"),
    (b'{"products": [{"product_id": "", "external_identifier": "1"}], "fulfillment_locations": ["US01"]}',
     "products.0.product_id", "bad_request"),
    (b'{"products": [null], "fulfillment_locations": ["US01"]}', "products.0", "bad_request"),
    (b'{"products": [{"product_id": "1", "external_identifier": "1"}], "fulfillment_locations": ["US01", null]}',
     "fulfillment_locations.1", "bad_request"),
    (b'{"products": [{"product_id": "1", "external_identifier": "1"}], "fulfillment_locations": [""]}',
     "fulfillment_locations.0", "bad_request"),
    (b'{"products": [{"product_id": "1", "external_identifier": null}], "fulfillment_locations": ["US01"]}',
     "products.0.external_identifier", "bad_request"),
]


@pytest.mark.parametrize("body,field,code", BAD_BODIES)
def test_bad_input_gets_a_400_envelope_naming_the_field(client, body, field, code):
    resp = client.post("/availabilities", data=body, content_type="application/json")
    assert resp.status_code == 400
    err = resp.get_json()
    assert err["error"] == code
    assert field in [d["field"] for d in err["details"]]
    assert err["message"].startswith(err["details"][0]["field"] + ": ")


def test_an_oversize_body_is_a_413_envelope(config_file):
    client = make_client(config_file, max_body_bytes=2048)
    body = orjson.dumps({"products": [{"product_id": str(i), "external_identifier": str(i)} for i in range(100)],
                         "fulfillment_locations": ["US01"]})
    resp = client.post("/availabilities", data=body, content_type="application/json")
    assert resp.status_code == 413
    assert resp.get_json() == {"error": "body_too_large", "message": "request body is larger than max_body_bytes=2048",
                               "details": [{"field": "(body)", "problem": "request body is larger than max_body_bytes=2048"}]}


def test_more_pairs_than_max_pairs_is_refused_with_the_limit(config_file):
    client = make_client(config_file, max_pairs=5)
    resp = client.post("/availabilities", json=SPEC_SAMPLE)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "too_many_pairs"
    assert "6 pairs, more than max_pairs=5" in resp.get_json()["message"]


def test_unknown_routes_and_methods_get_the_json_envelope(client):
    assert client.get("/nope").get_json()["error"] == "not_found"
    resp = client.get("/availabilities")
    assert resp.status_code == 405 and resp.get_json()["error"] == "method_not_allowed"


# -- auth ------------------------------------------------------------------

@pytest.fixture
def auth_client(config_file):
    return make_client(config_file, auth={"api_keys": [KEY, "other-key-0123456789-abcdef"]})


@pytest.mark.parametrize("header", [KEY, f"Bearer {KEY}", f"bearer {KEY}", "other-key-0123456789-abcdef"])
def test_the_raw_key_and_a_bearer_key_are_accepted(auth_client, header):
    resp = auth_client.post("/availabilities", json=SPEC_SAMPLE, headers={"Authorization": header})
    assert resp.status_code == 200 and rows(resp)[0] == ("1000061", "US01", 10)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong-key-0123456789abcdef"},
                                     {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY[:-1]}])
def test_a_missing_or_wrong_key_is_a_401_envelope(auth_client, headers):
    resp = auth_client.post("/availabilities", json=SPEC_SAMPLE, headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "unauthorized"
    assert "Bearer" in resp.headers["WWW-Authenticate"]


def test_health_routes_need_no_key(auth_client):
    assert auth_client.get("/healthz").get_json() == {"status": "ok"}
    assert auth_client.get("/readyz").status_code == 200


def test_an_open_service_warns_loudly_at_startup(config_file, caplog):
    with caplog.at_level(logging.WARNING, logger="atp_bridge"):
        make_client(config_file)
    assert any("AUTH DISABLED" in r.getMessage() for r in caplog.records)


def test_api_keys_never_reach_the_log(config_file, caplog):
    with caplog.at_level(logging.DEBUG, logger="atp_bridge"):
        client = make_client(config_file, auth={"api_keys": [KEY]})
        client.post("/availabilities", json=SPEC_SAMPLE, headers={"Authorization": "x" * 30})
        client.post("/availabilities", json=SPEC_SAMPLE, headers={"Authorization": KEY})
    assert KEY not in caplog.text and "x" * 30 not in caplog.text


# -- readiness -------------------------------------------------------------

def test_readyz_is_503_with_per_adapter_status_when_an_adapter_is_unhealthy(config_file):
    client = make_client(config_file, adapters=[
        {"name": "ok", "type": "static"}, {"name": "down", "type": "failing", "healthy": False}])
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "not_ready", "adapters": {
        "ok": {"ok": True, "detail": "ok"}, "down": {"ok": False, "detail": "down on purpose"}}}
