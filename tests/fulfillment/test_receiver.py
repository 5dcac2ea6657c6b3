"""The provider-side receiver served over loopback HTTP: bearer key, payload
validation with field paths, dedup by id (memory and a real redis-server),
the callback, and a failing callback that lets NewStore's retry through."""
import logging

import pytest
import requests

from atp_bridge.fulfillment.receiver import MemoryDedup, RedisDedup, create_receiver_app

KEY = "provider-key-0123456789abcdef"


def payload(request_id="fr-1", **changes):
    body = {"id": request_id, "order_id": "order-1",
            "billing_address": {"country_code": "USA", "zip_code": "90017"},
            "shipping_address": {"country_code": "USA", "zip_code": "90017"},
            "shipping_options": {"carrier": "FEDEX", "service_level": "FEDEX_GROUND"},
            "created_at": "2017-10-27T12:24:17Z",
            "items": [{"product_id": "p1", "price": 20.0}, {"product_id": "p1", "price": 10.0}],
            "extended_attributes": [{"name": "channel", "value": "web"}]}
    body.update(changes)
    return body


@pytest.fixture
def receiver(serve):
    """``receiver(**kwargs)`` -> (url, received payloads)."""
    def _make(**kwargs):
        received = []
        kwargs.setdefault("api_key", KEY)
        app = create_receiver_app(kwargs.pop("on_request", received.append), **kwargs)
        return serve(app) + "/fulfillment_requests", received
    return _make


def post(url, body, key=KEY, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return requests.post(url, json=body, headers=headers, timeout=5, **kw)


def test_a_new_request_is_handed_to_the_callback_once(receiver):
    url, received = receiver()
    first = post(url, payload())
    assert (first.status_code, first.json()) == (200, {"id": "fr-1", "duplicate": False})
    again = post(url, payload())
    assert (again.status_code, again.json()) == (200, {"id": "fr-1", "duplicate": True})
    assert received == [payload()]  # verbatim, unknown keys (price) included


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdef", KEY + "x", ""])
def test_a_missing_or_wrong_key_is_401_and_nothing_is_handed_on(receiver, key):
    url, received = receiver()
    answer = post(url, payload(), key=key)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert received == []


def test_without_an_api_key_every_caller_is_accepted_and_a_warning_logged(receiver, caplog):
    caplog.set_level(logging.WARNING, "atp_bridge.fulfillment")
    url, received = receiver(api_key=None)
    assert post(url, payload(), key=None).status_code == 200
    assert len(received) == 1
    assert "fulfillment receiver without an api key" in caplog.text


@pytest.mark.parametrize("change, field, problem", [
    ({"items": []}, "items", "Shorter than minimum length 1."),
    ({"items": [{"price": 1}]}, "items.0.product_id", "Missing data for required field."),
    ({"items": [{"product_id": "p1"}, {"product_id": ""}]}, "items.1.product_id",
     "Shorter than minimum length 1."),
    ({"shipping_options": {"carrier": "FEDEX"}}, "shipping_options.service_level",
     "Missing data for required field."),
    ({"created_at": "yesterday"}, "created_at", "Not a valid datetime."),
    ({"extended_attributes": [{"name": "a", "value": 1}] * 101}, "extended_attributes",
     "Longer than maximum length 100."),
    ({"id": 7}, "id", "Not a valid string."),
])
def test_an_invalid_payload_is_400_naming_the_field_path(receiver, change, field, problem):
    url, received = receiver()
    answer = post(url, payload(**change))
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "invalid_fulfillment_request"
    assert {"field": field, "problem": problem} in body["details"]
    assert received == []


def test_a_missing_field_and_a_body_that_is_not_json_say_so(receiver):
    url, _ = receiver()
    body = payload()
    del body["shipping_address"]
    details = post(url, body).json()["details"]
    assert details == [{"field": "shipping_address", "problem": "Missing data for required field."}]
    not_json = requests.post(url, data="{", headers={"Authorization": f"Bearer {KEY}",
                                                     "Content-Type": "application/json"},
                             timeout=5)
    assert (not_json.status_code, not_json.json()["error"]) == (400, "invalid_json")
    a_list = post(url, [payload()]).json()["details"]
    assert a_list == [{"field": "(body)", "problem": "Invalid input type."}]


def test_a_failing_callback_is_500_and_the_retry_is_processed(receiver, caplog):
    calls = []

    def flaky(body):
        calls.append(body["id"])
        if len(calls) == 1:
            raise RuntimeError("warehouse database is down")

    url, _ = receiver(on_request=flaky)
    first = post(url, payload())
    assert first.status_code == 500 and first.json()["error"] == "internal_error"
    assert "warehouse database is down" not in first.text  # no internals to the caller
    second = post(url, payload())
    assert second.json() == {"id": "fr-1", "duplicate": False}
    assert calls == ["fr-1", "fr-1"]


def test_memory_dedup_forgets_the_oldest_ids_past_its_size():
    dedup = MemoryDedup(max_ids=2)
    assert [dedup.add(i) for i in ("a", "b", "a", "c", "a")] == [True, True, False, True, True]


def test_redis_dedup_is_shared_by_two_receivers(receiver, redis_db):
    with redis_db.client() as r:
        url_a, got_a = receiver(dedup=RedisDedup(r, ttl_s=60))
        url_b, got_b = receiver(dedup=RedisDedup(r, ttl_s=60))
        assert post(url_a, payload("fr-9")).json()["duplicate"] is False
        assert post(url_b, payload("fr-9")).json()["duplicate"] is True  # another worker
        assert len(got_a) == 1 and got_b == []
        assert 0 < r.ttl("atp:fulfillment:seen:fr-9") <= 60


def test_unknown_paths_and_methods_answer_json(receiver):
    url, _ = receiver()
    assert requests.get(url, timeout=5).json()["error"] == "method_not_allowed"
    assert requests.post(url + "/x", json={}, timeout=5).status_code == 404
