"""Reject items: cheapest first, the empty product id case, every 400 code."""
import pytest

from atp_bridge.fulfillment.errors import (
    AlreadyRejectedError, AlreadyShippedError, FulfillmentRequestInvalidError,
    InvalidItemError, ItemAlreadyCanceledError, ItemAlreadyRejectedError,
    ItemAlreadyShippedError, NotFoundError, PayloadConversionFailedError,
)
from atp_bridge.fulfillment.models import LineItem, MissingItems, Receipt, ShipmentInfo

UPS = ShipmentInfo("UPS", "1Z1")


def test_reject_follows_the_spec_example_cheapest_product1_first_then_the_other(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    assert client.reject_items(uuid, [MissingItems(("product1",), "no_inventory")]) == \
        Receipt(uuid, 201)
    assert item_states(uuid)[:2] == [("product1", 20.0, "open"), ("product1", 10.0, "rejected")]
    client.reject_items(uuid, [MissingItems(("product1",), "no_inventory")])
    assert item_states(uuid)[:2] == [("product1", 20.0, "rejected"),
                                     ("product1", 10.0, "rejected")]


def test_rejected_items_status_lists_each_unit_with_its_reason(client, make_request):
    uuid = make_request()["uuid"]
    client.reject_items(uuid, [MissingItems(("product1",), "no_inventory"),
                               MissingItems(("product2",), "cannot_fulfill")])
    status = client.get_rejected_items(uuid)
    assert [(r.product_id, r.rejection_reason) for r in status.rejected_items] == [
        ("product1", "no_inventory"), ("product2", "cannot_fulfill")]
    assert all(r.received_at.endswith("Z") for r in status.rejected_items)


def test_wire_dicts_work_as_well_as_dataclasses(client, make_request, item_states):
    uuid = make_request([("p1", 1.0)])["uuid"]
    client.reject_items(uuid, [{"product_ids": ["p1"], "reason": "no_inventory"}])
    assert item_states(uuid) == [("p1", 1.0, "rejected")]


def test_a_single_empty_product_id_rejects_every_open_unit(client, make_request, item_states):
    uuid = make_request()["uuid"]
    client.cancel_items(uuid, ["product2"])
    client.reject_all_items(uuid, "cannot_fulfill")
    assert [s for _, _, s in item_states(uuid)].count("rejected") == 3
    assert len(client.get_rejected_items(uuid).rejected_items) == 3


def test_an_empty_product_id_in_more_than_one_group_is_invalid_item(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(InvalidItemError) as info:
        client.reject_items(uuid, [MissingItems(("",), "no_inventory"),
                                   MissingItems(("",), "cannot_fulfill")])
    assert (info.value.status, info.value.error_code) == (400, "invalid_item")


def test_mixing_empty_and_real_product_ids_is_invalid_item(client, make_request, item_states):
    uuid = make_request()["uuid"]
    with pytest.raises(InvalidItemError) as info:
        client.reject_items(uuid, [MissingItems(("", "product1"), "no_inventory")])
    assert info.value.conflicting_items == ("product1",)
    with pytest.raises(InvalidItemError):
        client.reject_items(uuid, [MissingItems(("",), "no_inventory"),
                                   MissingItems(("product2",), "no_inventory")])
    assert {s for _, _, s in item_states(uuid)} == {"open"}


def test_a_product_not_in_the_request_is_invalid_item(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(InvalidItemError) as info:
        client.reject_items(uuid, [MissingItems(("nope",), "no_inventory")])
    assert info.value.conflicting_items == ("nope",)


def test_rejecting_a_rejected_unit_is_item_already_rejected(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.reject_items(uuid, [MissingItems(("p1",), "no_inventory")])
    with pytest.raises(ItemAlreadyRejectedError) as info:
        client.reject_items(uuid, [MissingItems(("p1",), "no_inventory")])
    assert (info.value.status, info.value.conflicting_items) == (400, ("p1",))


def test_rejecting_a_shipped_unit_is_item_already_shipped(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.ship(uuid, [LineItem(("p1",), UPS)])
    with pytest.raises(ItemAlreadyShippedError) as info:
        client.reject_items(uuid, [MissingItems(("p1",), "no_inventory")])
    assert (info.value.status, info.value.error_code) == (400, "item_already_shipped")


def test_rejecting_a_canceled_unit_is_item_already_canceled(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.cancel_items(uuid, ["p1"])
    with pytest.raises(ItemAlreadyCanceledError) as info:
        client.reject_items(uuid, [MissingItems(("p1",), "no_inventory")])
    assert (info.value.status, info.value.error_code) == (400, "item_already_canceled")


def test_the_rest_of_a_partly_shipped_request_can_still_be_rejected(
        client, make_request, item_states):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.ship(uuid, [LineItem(("p1",), UPS)])
    client.reject_all_items(uuid, "no_inventory")
    assert item_states(uuid) == [("p1", 1.0, "shipped"), ("p2", 1.0, "rejected")]


def test_rejecting_a_fully_shipped_request_is_already_shipped(client, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    client.ship(uuid, [LineItem(("p1",), UPS)])
    with pytest.raises(AlreadyShippedError) as info:
        client.reject_all_items(uuid, "no_inventory")
    assert (info.value.status, info.value.error_code) == (400, "already_shipped")


def test_rejecting_a_rejected_request_is_already_rejected(client, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    client.reject_all_items(uuid, "cannot_fulfill")
    with pytest.raises(AlreadyRejectedError) as info:
        client.reject_items(uuid, [MissingItems(("p1",), "no_inventory")])
    assert info.value.error_description == "The fulfillment request has already been rejected."


def test_rejecting_everything_of_a_fully_canceled_request_is_item_already_canceled(
        client, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    client.cancel_items(uuid, ["p1"])
    with pytest.raises(ItemAlreadyCanceledError):
        client.reject_all_items(uuid, "cannot_fulfill")


def test_rejecting_items_of_an_unknown_request_is_fulfillment_request_invalid(client):
    with pytest.raises(FulfillmentRequestInvalidError) as info:
        client.reject_items("no-such-request", [MissingItems(("p1",), "no_inventory")])
    assert info.value.status == 400


@pytest.mark.parametrize("missing_items", [
    [],
    [{"product_ids": ["p1"], "reason": "lost_in_space"}],
    [{"product_ids": [], "reason": "no_inventory"}],
    [{"reason": "no_inventory"}],
])
def test_a_malformed_rejection_is_payload_conversion_failed(client, make_request,
                                                            missing_items):
    uuid = make_request([("p1", 1.0)])["uuid"]
    with pytest.raises(PayloadConversionFailedError) as info:
        client.reject_items(uuid, missing_items)
    assert (info.value.status, info.value.error_code) == (400, "payload_conversion_failed")


def test_rejected_items_status_is_404_until_something_was_rejected(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(NotFoundError) as info:
        client.get_rejected_items(uuid)
    assert info.value.status == 404
