"""The deprecated whole-request rejection endpoint."""
import pytest

from atp_bridge.fulfillment.errors import (
    AlreadyRejectedError, AlreadyShippedError, FulfillmentRequestInvalidError,
    InvalidItemError, ItemAlreadyCanceledError, NotFoundError, PayloadConversionFailedError,
)
from atp_bridge.fulfillment.models import LineItem, Receipt, ShipmentInfo

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_the_client_warns_that_the_rejection_endpoint_is_deprecated(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.warns(DeprecationWarning, match="reject_items"):
        client.reject_request(uuid, "cannot_fulfill")


def test_cannot_fulfill_rejects_every_unit_and_shows_in_both_status_endpoints(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    assert client.reject_request(uuid, "cannot_fulfill") == Receipt(uuid, 201)
    assert {s for _, _, s in item_states(uuid)} == {"rejected"}
    status = client.get_rejection(uuid)
    assert status.rejection_reason == "cannot_fulfill"
    assert sorted(status.missing_product_ids) == ["product1", "product1", "product2",
                                                  "product2"]
    assert status.received_at.endswith("Z") and status.error_code is None
    assert len(client.get_rejected_items(uuid).rejected_items) == 4


def test_no_inventory_rejects_the_cheapest_unit_of_each_product_id(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    client.reject_request(uuid, "no_inventory", ["product1"])
    assert item_states(uuid)[:2] == [("product1", 20.0, "open"), ("product1", 10.0, "rejected")]
    assert client.get_rejection(uuid).missing_product_ids == ("product1",)


def test_the_rejection_status_is_404_until_the_deprecated_endpoint_was_used(
        client, make_request):
    uuid = make_request()["uuid"]
    client.reject_all_items(uuid, "cannot_fulfill")
    with pytest.raises(NotFoundError):
        client.get_rejection(uuid)


def test_rejecting_after_any_unit_shipped_is_already_shipped(client, make_request):
    uuid = make_request()["uuid"]
    client.ship(uuid, [LineItem(("product2",), ShipmentInfo("DHL", "D1"))])
    with pytest.raises(AlreadyShippedError) as info:
        client.reject_request(uuid, "cannot_fulfill")
    assert (info.value.status, info.value.error_code) == (400, "already_shipped")


def test_rejecting_a_rejected_request_again_is_already_rejected(client, make_request):
    uuid = make_request()["uuid"]
    client.reject_request(uuid, "cannot_fulfill")
    with pytest.raises(AlreadyRejectedError):
        client.reject_request(uuid, "cannot_fulfill")


def test_cannot_fulfill_with_product_ids_is_payload_conversion_failed(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(PayloadConversionFailedError) as info:
        client.reject_request(uuid, "cannot_fulfill", ["product1"])
    assert "has to be empty" in info.value.error_description


def test_no_inventory_without_product_ids_is_payload_conversion_failed(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(PayloadConversionFailedError):
        client.reject_request(uuid, "no_inventory")


def test_an_unknown_rejection_reason_is_payload_conversion_failed(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(PayloadConversionFailedError) as info:
        client.reject_request(uuid, "bored")
    assert "rejection_reason" in info.value.error_description


def test_a_product_that_is_not_in_the_request_is_invalid_item(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(InvalidItemError) as info:
        client.reject_request(uuid, "no_inventory", ["product3"])
    assert info.value.conflicting_items == ("product3",)


def test_a_canceled_unit_cannot_be_rejected(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 2.0)])["uuid"]
    client.cancel_items(uuid, ["p1"])
    with pytest.raises(ItemAlreadyCanceledError):
        client.reject_request(uuid, "no_inventory", ["p1"])


def test_an_unknown_request_is_fulfillment_request_invalid(client):
    with pytest.raises(FulfillmentRequestInvalidError):
        client.reject_request("no-such-request", "cannot_fulfill")
    with pytest.raises(NotFoundError):
        client.get_rejection("no-such-request")
