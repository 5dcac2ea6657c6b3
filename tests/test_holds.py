"""Zero-ATP holds: recorded by a no_inventory rejection, honoured by the webhook."""
import time

import pytest
from click.testing import CliRunner

from atp_bridge import create_app
from atp_bridge.cli import main
from atp_bridge.fulfillment import FulfillmentClient, MissingItems
from atp_bridge.fulfillment.emulator import create_emulator_app
from atp_bridge.fulfillment.holds_link import reject_and_hold
from atp_bridge.holds import HoldStore
from tests.conftest import write_yaml
from tests.fulfillment.conftest import LoopbackServer

BODY = {"products": [{"product_id": "product1", "external_identifier": "E1"},
                     {"product_id": "product2", "external_identifier": "E2"}],
        "fulfillment_locations": ["DC01", "US01"]}
VALUES = {"DC01": {"E1": 7, "E2": 9}, "US01": {"E1": 3, "E2": 4}}


@pytest.fixture
def config_dir(tmp_path, redis_db):
    write_yaml(tmp_path / "bridge.yaml", {"holds": {"url": redis_db.url, "ttl_s": 60, "refresh_s": 0.05}})
    write_yaml(tmp_path / "adapters" / "10-stock.yaml", {"name": "stock", "type": "static", "values": VALUES})
    return tmp_path


@pytest.fixture
def holds(redis_db):
    store = HoldStore(redis_db.client(), ttl_s=60)
    yield store
    store.close()


@pytest.fixture
def emulator():
    server = LoopbackServer(create_emulator_app(seed=3))
    yield server.url
    server.stop()


@pytest.fixture
def webhook():
    """``webhook(config)`` -> a test client; the bridge (and its holds thread)
    is closed when the test ends."""
    apps = []

    def make(config):
        apps.append(create_app(str(config)))
        return apps[-1].test_client()
    yield make
    for app in apps:
        app.extensions["atp_bridge"].bridge.close()


def answer(client):
    resp = client.post("/availabilities", json=BODY)
    assert resp.status_code == 200
    return {(r["product_id"], r["fulfillment_location"]): r["atp"] for r in resp.get_json()["availabilities"]}


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_recorded_hold_zeroes_that_pair_in_the_webhook_answer(config_dir, holds, webhook):
    client = webhook(config_dir)
    assert answer(client) == {("product1", "DC01"): 7, ("product1", "US01"): 3,
                              ("product2", "DC01"): 9, ("product2", "US01"): 4}
    assert holds.record("DC01", ["product2"]) == 1
    assert wait_for(lambda: answer(client)[("product2", "DC01")] == 0)
    assert answer(client) == {("product1", "DC01"): 7, ("product1", "US01"): 3,
                              ("product2", "DC01"): 0, ("product2", "US01"): 4}


def test_a_hold_expires_after_its_ttl(config_dir, holds, webhook):
    client = webhook(config_dir)
    holds.record("US01", ["product1"], ttl_s=0.5)
    assert wait_for(lambda: answer(client)[("product1", "US01")] == 0)
    assert wait_for(lambda: answer(client)[("product1", "US01")] == 3, timeout=5)


def test_holds_are_one_sorted_set_with_expiry_scores(holds, redis_db):
    holds.record("DC01", ["a", "b"], ttl_s=100)
    with redis_db.client() as r:
        members = r.zrange("atp-bridge:holds", 0, -1, withscores=True)
    assert [m for m, _ in members] == [b"DC01\x1fa", b"DC01\x1fb"]
    assert all(time.time() + 90 < score <= time.time() + 100 for _, score in members)
    assert holds.active() == {"DC01": frozenset({"a", "b"})}
    assert holds.release("DC01", ["a"]) == 1
    assert holds.active() == {"DC01": frozenset({"b"})}


def test_a_no_inventory_rejection_through_the_client_holds_the_products(config_dir, holds, emulator, webhook):
    import requests
    order = requests.post(f"{emulator}/_emulator/fulfillment_requests", json={"items": [
        {"product_id": "product1", "price": 5.0}, {"product_id": "product2", "price": 8.0}]}, timeout=5).json()
    client = webhook(config_dir)
    with FulfillmentClient(emulator, "t") as fc:
        receipt, held = reject_and_hold(fc, holds, order["uuid"], [
            MissingItems(("product1",), "no_inventory")], location="DC01")
    assert receipt.status == 201 and held == ["product1"]
    assert wait_for(lambda: answer(client)[("product1", "DC01")] == 0)
    assert answer(client)[("product1", "US01")] == 3  # held only where the warehouse said so


def test_cannot_fulfill_rejections_hold_nothing(holds, emulator):
    import requests
    order = requests.post(f"{emulator}/_emulator/fulfillment_requests",
                          json={"items": [{"product_id": "product1", "price": 5.0}]}, timeout=5).json()
    with FulfillmentClient(emulator, "t") as fc:
        _, held = reject_and_hold(fc, holds, order["uuid"], [MissingItems(("product1",), "cannot_fulfill")],
                                  location="DC01")
    assert held == [] and holds.active() == {}


def test_rejecting_every_item_holds_the_products_read_back_from_newstore(holds, emulator):
    import requests
    order = requests.post(f"{emulator}/_emulator/fulfillment_requests", json={"items": [
        {"product_id": "product1", "price": 5.0}, {"product_id": "product2", "price": 8.0}]}, timeout=5).json()
    with FulfillmentClient(emulator, "t") as fc:
        _, held = reject_and_hold(fc, holds, order["uuid"], [MissingItems(("",), "no_inventory")],
                                  location="DC01")
    assert held == ["product1", "product2"]
    assert holds.active() == {"DC01": frozenset({"product1", "product2"})}


def test_the_cli_reject_with_hold_location_records_the_hold(config_dir, holds, emulator, monkeypatch):
    import requests
    order = requests.post(f"{emulator}/_emulator/fulfillment_requests",
                          json={"items": [{"product_id": "product2", "price": 5.0}]}, timeout=5).json()
    monkeypatch.setenv("NEWSTORE_URL", emulator)
    monkeypatch.setenv("NEWSTORE_TOKEN", "t")
    result = CliRunner().invoke(main, ["fulfillment", "reject", order["uuid"], "product2", "--reason",
                                       "no_inventory", "--hold-location", "US01", "--config", str(config_dir),
                                       "--json"])
    assert result.exit_code == 0, result.output
    assert '"held": {\n    "location": "US01",\n    "product_ids": [\n      "product2"' in result.output
    assert holds.active() == {"US01": frozenset({"product2"})}


def test_the_cli_says_how_to_configure_holds_when_the_config_has_none(tmp_path, emulator, monkeypatch):
    write_yaml(tmp_path / "c.yaml", {"adapters": [{"name": "s", "type": "static"}]})
    monkeypatch.setenv("NEWSTORE_URL", emulator)
    monkeypatch.setenv("NEWSTORE_TOKEN", "t")
    result = CliRunner().invoke(main, ["fulfillment", "reject", "x", "p", "--reason", "no_inventory",
                                       "--hold-location", "US01", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 1
    assert "has no `holds:` block" in result.output


def test_the_webhook_keeps_the_last_known_holds_while_redis_is_down(tmp_path, own_redis, webhook):
    write_yaml(tmp_path / "bridge.yaml", {"holds": {"url": own_redis.url, "refresh_s": 0.05}})
    write_yaml(tmp_path / "adapters" / "10-stock.yaml", {"name": "stock", "type": "static", "values": VALUES})
    store = HoldStore(own_redis.client())
    store.record("DC01", ["product1"])
    client = webhook(tmp_path)
    assert answer(client)[("product1", "DC01")] == 0
    own_redis.stop()
    time.sleep(0.3)  # several refreshes fail meanwhile
    got = answer(client)
    assert got[("product1", "DC01")] == 0 and got[("product2", "DC01")] == 9
