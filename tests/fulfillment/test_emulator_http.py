"""The emulator's HTTP surface: auth, error envelope, test data, seeding, locking."""
import threading

import pytest
import requests

from atp_bridge.fulfillment.client import FulfillmentClient
from atp_bridge.fulfillment.emulator import create_emulator_app
from atp_bridge.fulfillment.errors import (
    FulfillmentAPIError, ItemAlreadyCanceledError, UnauthorizedError, error_from_response,
)

API = "/v0/d/fulfillment_requests"


def test_a_call_without_a_bearer_token_is_401(emulator_url, make_request):
    uuid = make_request()["uuid"]
    resp = requests.post(f"{emulator_url}{API}/{uuid}/acknowledgement", timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error_code"] == "unauthorized"
    basic = requests.post(f"{emulator_url}{API}/{uuid}/acknowledgement",
                          headers={"Authorization": "Basic dXNlcjpwdw=="}, timeout=5)
    assert basic.status_code == 401
    empty = requests.get(f"{emulator_url}{API}/{uuid}/shipment",
                         headers={"Authorization": "Bearer "}, timeout=5)
    assert empty.status_code == 401


def test_any_non_empty_bearer_token_is_accepted_by_default(emulator_url, make_request):
    uuid = make_request()["uuid"]
    resp = requests.post(f"{emulator_url}{API}/{uuid}/acknowledgement",
                         headers={"Authorization": "Bearer whatever"}, timeout=5)
    assert (resp.status_code, resp.content) == (200, b"")


def test_a_configured_token_is_the_only_one_accepted(serve):
    url = serve(create_emulator_app(seed=1, token="s3cret"))
    uuid = requests.post(f"{url}/_emulator/fulfillment_requests",
                         json={"items": [{"product_id": "p1", "price": 1}]}).json()["uuid"]
    with pytest.raises(UnauthorizedError) as info:
        FulfillmentClient(url, "wrong", max_retries=0).accept(uuid)
    assert (info.value.status, info.value.error_description) == (
        401, "The bearer token is not valid.")
    assert FulfillmentClient(url, "s3cret").accept(uuid).status == 200


def test_an_unknown_path_is_a_json_404(emulator_url):
    resp = requests.get(f"{emulator_url}/v0/d/nothing_here",
                        headers={"Authorization": "Bearer t"}, timeout=5)
    assert resp.status_code == 404
    assert resp.json()["error_code"] == "not_found"


def test_a_body_that_is_not_json_is_payload_conversion_failed(emulator_url, make_request):
    uuid = make_request()["uuid"]
    resp = requests.post(f"{emulator_url}{API}/{uuid}/shipment", data="line_items=1",
                         headers={"Authorization": "Bearer t"}, timeout=5)
    assert resp.status_code == 400
    assert resp.json() == {"error_code": "payload_conversion_failed",
                           "error_description": "The body is not a JSON document."}


def test_item_errors_carry_conflicting_items_on_the_wire(emulator_url, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    headers = {"Authorization": "Bearer t"}
    requests.post(f"{emulator_url}{API}/{uuid}/canceled_items", json={"product_ids": ["p1"]},
                  headers=headers, timeout=5)
    resp = requests.post(f"{emulator_url}{API}/{uuid}/canceled_items",
                         json={"product_ids": ["p1"]}, headers=headers, timeout=5)
    assert resp.status_code == 409
    body = resp.json()
    assert (body["error_code"], body["conflicting_items"]) == ("item_already_canceled", ["p1"])


def test_test_data_comes_back_with_item_ids_prices_and_an_optional_fixed_uuid(make_request):
    created = make_request([("p1", 20.0), ("p2", 5)], uuid="fr-1")
    assert created["uuid"] == "fr-1"
    assert [(i["product_id"], i["price"]) for i in created["items"]] == [("p1", 20.0),
                                                                          ("p2", 5.0)]
    assert len({i["item_id"] for i in created["items"]}) == 2


def test_test_data_is_validated_and_uuids_are_unique(emulator_url, make_request):
    make_request(uuid="fr-1")
    url = f"{emulator_url}/_emulator/fulfillment_requests"
    assert requests.post(url, json={"uuid": "fr-1", "items": [{"product_id": "p",
                                                                "price": 1}]}).status_code == 409
    bad = requests.post(url, json={"items": [{"product_id": "p", "price": -1}]})
    assert (bad.status_code, bad.json()["error_code"]) == (400, "payload_conversion_failed")
    assert requests.post(url, json={"items": []}).status_code == 400
    assert requests.get(f"{url}/nope").status_code == 404


def test_the_same_seed_gives_the_same_uuids_and_the_same_tie_breaks(serve):
    def run(seed):
        url = serve(create_emulator_app(seed=seed))
        created = requests.post(f"{url}/_emulator/fulfillment_requests", json={"items": [
            {"product_id": "p", "price": 1}] * 6}).json()
        client = FulfillmentClient(url, "t")
        for _ in range(3):
            client.cancel_items(created["uuid"], ["p"])
        items = requests.get(f"{url}/_emulator/fulfillment_requests/{created['uuid']}").json()
        return created["uuid"], [i["status"] for i in items["items"]]

    assert run(42) == run(42)
    assert run(42)[0] != run(43)[0]


def test_concurrent_cancels_never_cancel_the_same_unit_twice(client, make_request, item_states):
    uuid = make_request([("p", 1.0)] * 8)["uuid"]
    outcomes = []

    def cancel():
        try:
            client_ = FulfillmentClient(client.base_url, "t")
            outcomes.append(client_.cancel_items(uuid, ["p"]).status)
        except ItemAlreadyCanceledError as err:
            outcomes.append(err.status)

    threads = [threading.Thread(target=cancel) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [201] * 8 + [409] * 4
    assert [s for _, _, s in item_states(uuid)] == ["canceled"] * 8


def test_an_unknown_error_code_keeps_its_code_on_the_base_class():
    err = error_from_response(418, {"error_code": "teapot", "error_description": "short"})
    assert type(err) is FulfillmentAPIError
    assert (err.status, err.error_code, err.error_description) == (418, "teapot", "short")
    assert str(err) == "HTTP 418 teapot: short"
