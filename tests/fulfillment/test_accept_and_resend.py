"""Acknowledgement and resend over real HTTP."""
import pytest
import requests

from atp_bridge.fulfillment.errors import (
    AlreadyRejectedError, AlreadyShippedError, FulfillmentRequestInvalidError, NotFoundError,
)
from atp_bridge.fulfillment.models import LineItem, MissingItems, Receipt, ShipmentInfo

FEDEX = ShipmentInfo("FEDEX", "T1")


def test_accepting_a_known_request_answers_200_and_records_the_acknowledgement(
        client, make_request, emulator_url):
    uuid = make_request()["uuid"]
    assert client.accept(uuid) == Receipt(uuid, 200)
    state = requests.get(f"{emulator_url}/_emulator/fulfillment_requests/{uuid}").json()
    assert state["acknowledged_at"].endswith("Z")


def test_accepting_twice_is_a_harmless_no_op(client, make_request, emulator_url):
    uuid = make_request()["uuid"]
    client.accept(uuid)
    first = requests.get(f"{emulator_url}/_emulator/fulfillment_requests/{uuid}").json()
    assert client.accept(uuid).status == 200
    again = requests.get(f"{emulator_url}/_emulator/fulfillment_requests/{uuid}").json()
    assert again["acknowledged_at"] == first["acknowledged_at"]


def test_accepting_an_unknown_request_is_fulfillment_request_invalid(client):
    with pytest.raises(FulfillmentRequestInvalidError) as info:
        client.accept("no-such-request")
    assert (info.value.status, info.value.error_code) == (400, "fulfillment_request_invalid")


def test_accepting_a_rejected_request_is_already_rejected(client, make_request):
    uuid = make_request()["uuid"]
    client.reject_items(uuid, [MissingItems(("",), "cannot_fulfill")])
    with pytest.raises(AlreadyRejectedError) as info:
        client.accept(uuid)
    assert (info.value.status, info.value.error_code) == (400, "already_rejected")
    assert info.value.error_description == "The fulfillment request has already been rejected."


def test_accepting_after_a_shipment_started_is_already_shipped(client, make_request):
    uuid = make_request()["uuid"]
    client.ship(uuid, [LineItem(("product1",), FEDEX)])
    with pytest.raises(AlreadyShippedError) as info:
        client.accept(uuid)
    assert (info.value.status, info.value.error_code) == (400, "already_shipped")


def test_resending_a_known_request_answers_200_and_counts(client, make_request, emulator_url):
    uuid = make_request()["uuid"]
    assert client.resend(uuid) == Receipt(uuid, 200)
    assert client.resend(uuid) == Receipt(uuid, 200)
    state = requests.get(f"{emulator_url}/_emulator/fulfillment_requests/{uuid}").json()
    assert state["resend_count"] == 2


def test_resending_works_whatever_the_shipment_status(client, make_request):
    uuid = make_request([("p1", 5.0)])["uuid"]
    client.ship(uuid, [LineItem(("p1",), FEDEX)])
    assert client.resend(uuid).status == 200


def test_resending_an_unknown_request_is_404(client):
    with pytest.raises(NotFoundError) as info:
        client.resend("no-such-request")
    assert (info.value.status, info.value.error_code) == (404, "not_found")
