"""Cancel items: cheapest first, 409 once nothing is open."""
import pytest

from atp_bridge.fulfillment.errors import (
    AlreadyRejectedError, InvalidItemError, ItemAlreadyCanceledError, ItemAlreadyRejectedError,
    ItemAlreadyShippedError, NotFoundError, PayloadConversionFailedError,
)
from atp_bridge.fulfillment.models import LineItem, MissingItems, Receipt, ShipmentInfo


def test_cancel_follows_the_spec_example_cheapest_product1_first_then_the_other(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    assert client.cancel_items(uuid, ["product1"]) == Receipt(uuid, 201)
    assert item_states(uuid)[:2] == [("product1", 20.0, "open"), ("product1", 10.0, "canceled")]
    client.cancel_items(uuid, ["product1"])
    assert item_states(uuid)[:2] == [("product1", 20.0, "canceled"),
                                     ("product1", 10.0, "canceled")]
    assert [s for _, _, s in item_states(uuid)[2:]] == ["open", "open"]


def test_canceled_items_status_lists_item_ids_in_cancel_order(client, make_request):
    created = make_request()
    uuid = created["uuid"]
    ids = {(i["product_id"], i["price"]): i["item_id"] for i in created["items"]}
    client.cancel_items(uuid, ["product1"])
    client.cancel_items(uuid, ["product1"])
    status = client.get_canceled_items(uuid)
    assert [(c.product_id, c.item_id) for c in status.canceled_items] == [
        ("product1", ids[("product1", 10.0)]), ("product1", ids[("product1", 20.0)])]
    assert all(c.received_at.endswith("Z") and c.accepted_at for c in status.canceled_items)


def test_equal_prices_are_broken_at_random_but_one_unit_per_product_id(
        client, make_request, item_states):
    uuid = make_request()["uuid"]
    client.cancel_items(uuid, ["product2"])
    product2 = [s for p, _, s in item_states(uuid) if p == "product2"]
    assert sorted(product2) == ["canceled", "open"]


def test_repeating_a_product_id_cancels_that_many_units(client, make_request, item_states):
    uuid = make_request()["uuid"]
    client.cancel_items(uuid, ["product2", "product2", "product1"])
    assert item_states(uuid) == [("product1", 20.0, "open"), ("product1", 10.0, "canceled"),
                                 ("product2", 10.0, "canceled"), ("product2", 10.0, "canceled")]


def test_canceled_items_status_is_404_until_something_was_canceled(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(NotFoundError) as info:
        client.get_canceled_items(uuid)
    assert info.value.status == 404
    with pytest.raises(NotFoundError):
        client.get_canceled_items("no-such-request")


def test_cancel_after_cancel_is_409_item_already_canceled(client, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    client.cancel_items(uuid, ["p1"])
    with pytest.raises(ItemAlreadyCanceledError) as info:
        client.cancel_items(uuid, ["p1"])
    err = info.value
    assert (err.status, err.error_code, err.conflicting_items) == (
        409, "item_already_canceled", ("p1",))


def test_cancel_after_ship_is_409_item_already_shipped(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.ship(uuid, [LineItem(("p1",), ShipmentInfo("UPS", "1Z"))])
    with pytest.raises(ItemAlreadyShippedError) as info:
        client.cancel_items(uuid, ["p1"])
    assert (info.value.status, info.value.conflicting_items) == (409, ("p1",))


def test_cancel_after_item_rejection_is_409_item_already_rejected(client, make_request):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.reject_items(uuid, [MissingItems(("p1",), "no_inventory")])
    with pytest.raises(ItemAlreadyRejectedError) as info:
        client.cancel_items(uuid, ["p1"])
    assert (info.value.status, info.value.error_code) == (409, "item_already_rejected")


def test_cancel_after_the_whole_request_was_rejected_is_400_already_rejected(
        client, make_request):
    uuid = make_request([("p1", 1.0)])["uuid"]
    client.reject_items(uuid, [MissingItems(("",), "cannot_fulfill")])
    with pytest.raises(AlreadyRejectedError) as info:
        client.cancel_items(uuid, ["p1"])
    assert info.value.status == 400


def test_a_failed_cancel_changes_nothing(client, make_request, item_states):
    uuid = make_request([("p1", 1.0), ("p2", 1.0)])["uuid"]
    client.cancel_items(uuid, ["p2"])
    with pytest.raises(ItemAlreadyCanceledError):
        client.cancel_items(uuid, ["p1", "p2"])
    assert item_states(uuid) == [("p1", 1.0, "open"), ("p2", 1.0, "canceled")]


def test_cancel_of_a_product_not_in_the_request_is_invalid_item(client, make_request):
    uuid = make_request()["uuid"]
    with pytest.raises(InvalidItemError) as info:
        client.cancel_items(uuid, ["product9", "product1", "product1", "product1"])
    assert (info.value.status, info.value.conflicting_items) == (400, ("product9", "product1"))


def test_cancel_of_an_unknown_request_is_404(client):
    with pytest.raises(NotFoundError) as info:
        client.cancel_items("no-such-request", ["p1"])
    assert info.value.status == 404


@pytest.mark.parametrize("product_ids", [[], [""], [3]])
def test_cancel_with_a_bad_payload_is_payload_conversion_failed(client, make_request,
                                                                product_ids):
    uuid = make_request()["uuid"]
    with pytest.raises(PayloadConversionFailedError) as info:
        client.cancel_items(uuid, product_ids)
    assert (info.value.status, info.value.error_code) == (400, "payload_conversion_failed")
