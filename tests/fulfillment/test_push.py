"""The emulator (a real process) pushes fulfillment requests to a provider on
loopback: NewStore's shape and key, retries on errors and timeouts, giving up,
duplicates, and generated orders from the seeded catalogue."""
import random
import threading
import time

import pytest
from flask import Flask, Response, request

from atp_bridge.fulfillment.generate import random_order
from atp_bridge.fulfillment.receiver import FulfillmentRequestSchema, create_receiver_blueprint
from tests.fulfillment.conftest import LoopbackServer

KEY = "push-key-0123456789abcdefgh"


class Provider:
    """A provider on loopback: the receiver blueprint behind a script of failures
    per request id (``fr-503``: two 503s, ``fr-slow``: first answer after 1.5 s,
    ``fr-down``: always 500)."""

    def __init__(self):
        self.received, self.hits = [], {}
        app = Flask("provider")
        app.register_blueprint(create_receiver_blueprint(self.received.append, api_key=KEY))
        app.before_request(self._script)
        self.server = LoopbackServer(app)
        self.url = self.server.url + "/fulfillment_requests"

    def _script(self):
        rid = (request.get_json(silent=True) or {}).get("id")
        self.hits[rid] = self.hits.get(rid, 0) + 1
        if rid == "fr-503" and self.hits[rid] <= 2:
            return Response("busy", 503)
        if rid == "fr-slow" and self.hits[rid] == 1:
            time.sleep(1.5)
        if rid == "fr-down":
            return Response("down", 500)
        return None


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.server.stop()


@pytest.fixture(scope="module")
def pushing(start_emulator, provider):
    return start_emulator("--seed", "3", "--provider-url", provider.url, "--provider-key", KEY,
                          "--push-backoff", "0.05", "--push-timeout", "0.5",
                          "--push-attempts", "3")


def attempts_of(emulator, request_id, settled=lambda a: a[-1]["outcome"] != "retrying"):
    """Every delivery attempt of ``request_id``, once the last one settled."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        data = emulator.get("/_emulator/deliveries")
        mine = [d for d in data["deliveries"] if d["id"] == request_id]
        if mine and settled(mine) and data["pending"] == 0:
            return mine
        time.sleep(0.05)
    pytest.fail(f"deliveries of {request_id} did not settle: {mine}")


def test_a_new_request_is_pushed_in_newstores_shape_with_the_key(pushing, provider):
    pushing.create([("p1", 20.0), ("p2", 10.0)], uuid="fr-shape", order_id="o-77",
                   shipping_options={"carrier": "UPS", "service_level": "UPS_GROUND"},
                   extended_attributes=[{"name": "gift", "value": "yes"}])
    [attempt] = attempts_of(pushing, "fr-shape")
    assert (attempt["attempt"], attempt["status"], attempt["outcome"], attempt["duplicate"]) == (
        1, 200, "delivered", False)
    body = next(b for b in provider.received if b["id"] == "fr-shape")
    FulfillmentRequestSchema().load(body)  # the receiver's schema: raises if off
    assert (body["order_id"], body["shipping_options"], body["extended_attributes"]) == (
        "o-77", {"carrier": "UPS", "service_level": "UPS_GROUND"},
        [{"name": "gift", "value": "yes"}])
    assert body["items"] == [{"product_id": "p1", "price": 20.0},
                             {"product_id": "p2", "price": 10.0}]
    assert set(body) == {"id", "order_id", "billing_address", "shipping_address",
                         "shipping_options", "created_at", "items", "extended_attributes"}


def test_errors_are_retried_with_backoff_until_delivered(pushing, provider):
    pushing.create([("p1", 1.0)], uuid="fr-503")
    attempts = attempts_of(pushing, "fr-503")
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [
        (1, 503, "retrying"), (2, 503, "retrying"), (3, 200, "delivered")]
    assert attempts[0]["error"] == "HTTP 503: busy"
    assert [b["id"] for b in provider.received].count("fr-503") == 1


def test_a_timeout_is_retried(pushing, provider):
    pushing.create([("p1", 1.0)], uuid="fr-slow")
    attempts = attempts_of(pushing, "fr-slow")
    assert (attempts[0]["attempt"], attempts[0]["status"], attempts[0]["outcome"]) == (
        1, None, "retrying")
    assert "ReadTimeout" in attempts[0]["error"]
    assert (attempts[-1]["status"], attempts[-1]["outcome"]) == (200, "delivered")
    # the slow first attempt reached the callback after the emulator gave up waiting,
    # so the retry is a duplicate for the receiver: handed on once all the same
    assert [b["id"] for b in provider.received].count("fr-slow") == 1


def test_after_the_last_attempt_the_push_gives_up(pushing):
    pushing.create([("p1", 1.0)], uuid="fr-down")
    attempts = attempts_of(pushing, "fr-down")
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"), (2, 500, "retrying"), (3, 500, "gave_up")]


@pytest.fixture(scope="module")
def duplicating(start_emulator, provider):
    return start_emulator("--seed", "4", "--provider-url", provider.url, "--provider-key", KEY,
                          "--duplicate-rate", "1", "--generate", "3", "--interval", "0")


def test_generated_requests_come_from_the_seeded_catalogue_and_are_pushed_twice(
        duplicating, provider):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        data = duplicating.get("/_emulator/deliveries")
        if len(data["deliveries"]) >= 6 and data["pending"] == 0:
            break
        time.sleep(0.05)
    deliveries = data["deliveries"]
    assert len(deliveries) == 6
    ids = list(dict.fromkeys(d["id"] for d in deliveries))
    assert len(ids) == 3
    for rid in ids:
        mine = [(d["duplicate"], d["status"]) for d in deliveries if d["id"] == rid]
        assert mine == [(False, 200), (True, 200)]  # the repeat reached the receiver too
    got = {b["id"]: b for b in provider.received if b["id"] in ids}
    assert len(got) == 3  # the receiver dropped the three repeats
    rng = random.Random(4)
    expected = [random_order(rng) for _ in range(3)]
    assert [got[rid]["items"] for rid in ids] == [o["items"] for o in expected]
    assert [got[rid]["shipping_options"] for rid in ids] == [
        o["shipping_options"] for o in expected]
