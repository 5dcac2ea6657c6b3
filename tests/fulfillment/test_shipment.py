"""Shipment updates: most expensive first, duplicates, conflicts."""
import pytest

from atp_bridge.fulfillment.errors import (
    AlreadyRejectedError, FulfillmentRequestInvalidError, InvalidItemError,
    ItemAlreadyCanceledError, ItemAlreadyRejectedError, NotFoundError,
    PayloadConversionFailedError, ShipmentConflictError,
)
from atp_bridge.fulfillment.models import (
    LineItem, MissingItems, ShipmentInfo, ShipmentRecord, ShipmentResult,
)

PACKAGE_1 = ShipmentInfo("FEDEX", "1234", "https://www.fedex.com/fedextrack/?tracknumbers=1234",
                         "FEDEX_GROUND")
PACKAGE_2 = ShipmentInfo("FEDEX", "5678")


def test_ship_follows_the_spec_example_most_expensive_product1_first_then_the_other(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    result = client.ship(uuid, [LineItem(("product1",), PACKAGE_1)])
    assert result == ShipmentResult(uuid, 201, duplicate=False)
    assert item_states(uuid)[:2] == [("product1", 20.0, "shipped"), ("product1", 10.0, "open")]
    client.ship(uuid, [LineItem(("product1",), PACKAGE_2)])
    assert item_states(uuid)[:2] == [("product1", 20.0, "shipped"),
                                     ("product1", 10.0, "shipped")]


def test_shipping_status_lists_each_unit_with_its_carrier_data(client, make_request):
    uuid = make_request()["uuid"]
    client.ship(uuid, [LineItem(("product1", "product2"), PACKAGE_1)])
    status = client.get_shipment(uuid)
    assert status.failed_shipments == ()
    first = status.successful_shipments[0]
    assert first == ShipmentRecord(
        "product1", "FEDEX", "FEDEX_GROUND", "1234",
        "https://www.fedex.com/fedextrack/?tracknumbers=1234", first.received_at,
        first.accepted_at, None)
    assert [s.product_id for s in status.successful_shipments] == ["product1", "product2"]
    assert first.accepted_at.endswith("Z")


def test_the_same_notification_again_is_a_200_duplicate_that_changes_nothing(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    client.ship(uuid, [LineItem(("product1",), PACKAGE_1)])
    before = item_states(uuid)
    again = client.ship(uuid, [LineItem(("product1",), PACKAGE_1)])
    assert (again.status, again.duplicate) == (200, True)
    assert item_states(uuid) == before
    assert len(client.get_shipment(uuid).successful_shipments) == 1


def test_a_notification_with_old_and_new_units_ships_only_the_new_ones(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    client.ship(uuid, [LineItem(("product1",), PACKAGE_1)])
    result = client.ship(uuid, [LineItem(("product1",), PACKAGE_1),
                                LineItem(("product2",), PACKAGE_2)])
    assert (result.status, result.duplicate) == (201, False)
    assert [s for _, _, s in item_states(uuid)].count("shipped") == 2


def test_other_shipment_data_for_a_fully_shipped_product_is_a_conflict(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.ship(uuid, [LineItem(("p1",), ShipmentInfo("Foo", "1"))])
    with pytest.raises(ShipmentConflictError) as info:
        client.ship(uuid, [LineItem(("p1", "p2"), ShipmentInfo("Bar", "1"))])
    err = info.value
    assert (err.status, err.error_code, err.conflicting_items) == (400, "shipment_conflict",
                                                                   ("p1",))


def test_other_shipment_data_ships_the_next_unit_while_one_is_open(
        client, make_request, item_states):
    uuid = make_request([("p1", 1.0), ("p1", 2.0)])["uuid"]
    client.ship(uuid, [LineItem(("p1",), ShipmentInfo("Foo", "1"))])
    assert client.ship(uuid, [LineItem(("p1",), ShipmentInfo("Bar", "2"))]).status == 201
    assert item_states(uuid) == [("p1", 1.0, "shipped"), ("p1", 2.0, "shipped")]


def test_a_failed_shipment_changes_nothing(client, make_request, item_states):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    with pytest.raises(InvalidItemError):
        client.ship(uuid, [LineItem(("p1", "p9"), PACKAGE_1)])
    assert item_states(uuid) == [("p1", 1.0, "open"), ("p2", 1.0, "open")]


def test_shipping_a_product_not_in_the_request_is_invalid_item(client, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    with pytest.raises(InvalidItemError) as info:
        client.ship(uuid, [LineItem(("p1", "p1"), PACKAGE_1)])
    assert (info.value.status, info.value.conflicting_items) == (400, ("p1",))


def test_shipping_a_rejected_request_is_already_rejected(client, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    client.reject_all_items(uuid, "no_inventory")
    with pytest.raises(AlreadyRejectedError) as info:
        client.ship(uuid, [LineItem(("p1",), PACKAGE_1)])
    assert (info.value.status, info.value.error_code) == (400, "already_rejected")


def test_shipping_a_rejected_unit_is_item_already_rejected(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.reject_items(uuid, [MissingItems(("p1",), "no_inventory")])
    with pytest.raises(ItemAlreadyRejectedError) as info:
        client.ship(uuid, [LineItem(("p1",), PACKAGE_1)])
    assert info.value.conflicting_items == ("p1",)


def test_shipping_a_canceled_unit_is_item_already_canceled(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.cancel_items(uuid, ["p1"])
    with pytest.raises(ItemAlreadyCanceledError):
        client.ship(uuid, [LineItem(("p1",), PACKAGE_1)])


def test_shipping_an_unknown_request_is_fulfillment_request_invalid(client):
    with pytest.raises(FulfillmentRequestInvalidError):
        client.ship("no-such-request", [LineItem(("p1",), PACKAGE_1)])


@pytest.mark.parametrize("line_items", [
    [],
    [{"product_ids": ["p1"]}],
    [{"product_ids": [], "shipment": {"carrier": "UPS", "tracking_code": "1"}}],
    [{"product_ids": ["p1"], "shipment": {"carrier": "UPS"}}],
    [{"product_ids": ["p1"], "shipment": {"carrier": "", "tracking_code": "1"}}],
    [{"product_ids": "p1", "shipment": {"carrier": "UPS", "tracking_code": "1"}}],
])
def test_malformed_shipment_information_is_payload_conversion_failed(client, make_request,
                                                                     line_items):
    uuid = make_request([("p1", 1.0)])["uuid"]
    with pytest.raises(PayloadConversionFailedError) as info:
        client.ship(uuid, line_items)
    assert (info.value.status, info.value.error_code) == (400, "payload_conversion_failed")


def test_shipping_status_is_404_until_something_shipped(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(NotFoundError) as info:
        client.get_shipment(uuid)
    assert info.value.status == 404
    with pytest.raises(NotFoundError):
        client.get_shipment("no-such-request")
