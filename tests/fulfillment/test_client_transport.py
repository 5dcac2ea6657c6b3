"""Retries, timeouts and error mapping, against tiny loopback servers that misbehave."""
import socket
import time

import pytest
from flask import Flask, Response, request

from atp_bridge.fulfillment import errors as e
from atp_bridge.fulfillment.client import FulfillmentClient
from atp_bridge.fulfillment.models import LineItem, ShipmentInfo


def flaky_app(failures: int, status: int = 503, delay: float = 0.0):
    """Answers ``status`` (or stalls ``delay`` s) ``failures`` times, then succeeds.
    ``app.calls`` records (method, path, authorization) of every call."""
    app = Flask(__name__)
    app.calls = []

    @app.route("/v0/d/fulfillment_requests/<uuid>/<action>", methods=["GET", "POST"])
    def any_call(uuid, action):
        app.calls.append((request.method, request.path, request.headers.get("Authorization")))
        if len(app.calls) <= failures:
            if delay:
                time.sleep(delay)
            else:
                return Response("busy", status=status)
        if request.method == "GET":
            return {"successful_shipments": [{"product_id": "p1", "carrier": "UPS"}]}
        return Response(status=201 if action != "acknowledgement" else 200)

    return app


def test_a_get_is_retried_after_a_503_and_then_succeeds(serve):
    app = flaky_app(failures=1)
    client = FulfillmentClient(serve(app), "tok", backoff=0.01)
    status = client.get_shipment("fr-1")
    assert [s.carrier for s in status.successful_shipments] == ["UPS"]
    assert [c[0] for c in app.calls] == ["GET", "GET"]
    assert app.calls[0][2] == "Bearer tok"


def test_an_idempotent_post_is_retried_after_5xx(serve):
    app = flaky_app(failures=2, status=502)
    client = FulfillmentClient(serve(app), "tok", backoff=0.01)
    assert client.accept("fr-1").status == 200
    result = client.ship("fr-1", [LineItem(("p1",), ShipmentInfo("UPS", "1"))])
    assert (result.status, result.duplicate) == (201, False)
    assert len(app.calls) == 4


@pytest.mark.parametrize("call", [
    lambda c: c.cancel_items("fr-1", ["p1"]),
    lambda c: c.reject_all_items("fr-1", "no_inventory"),
])
def test_cancel_and_reject_are_never_retried(serve, call):
    app = flaky_app(failures=1)
    client = FulfillmentClient(serve(app), "tok", backoff=0.01)
    with pytest.raises(e.ServerError) as info:
        call(client)
    assert (info.value.status, info.value.error_description) == (503, "busy")
    assert len(app.calls) == 1


def test_backoff_doubles_between_attempts_and_gives_up_after_max_retries(serve):
    app = flaky_app(failures=10)
    slept = []
    client = FulfillmentClient(serve(app), "tok", max_retries=3, backoff=0.05,
                               sleep=slept.append)
    with pytest.raises(e.ServerError) as info:
        client.get_canceled_items("fr-1")
    assert info.value.status == 503
    assert slept == [0.05, 0.1, 0.2]
    assert len(app.calls) == 4


def test_a_read_timeout_is_retried_for_a_get(serve):
    app = flaky_app(failures=1, delay=0.5)
    client = FulfillmentClient(serve(app), "tok", read_timeout=0.2, backoff=0.01)
    assert client.get_shipment("fr-1").successful_shipments[0].product_id == "p1"
    assert len(app.calls) == 2


def test_a_refused_connection_becomes_a_transport_error_after_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slept = []
    client = FulfillmentClient(f"http://127.0.0.1:{port}", "tok", max_retries=2,
                               backoff=0.01, sleep=slept.append)
    with pytest.raises(e.FulfillmentTransportError) as info:
        client.resend("fr-1")
    assert info.value.status is None
    assert "after 3 attempt(s)" in str(info.value)
    assert slept == [0.01, 0.02]


def test_a_success_with_a_body_that_is_not_json_is_a_transport_error(serve):
    app = Flask(__name__)
    app.add_url_rule("/v0/d/fulfillment_requests/<uuid>/shipment", "s",
                     lambda uuid: "<html>maintenance</html>")
    client = FulfillmentClient(serve(app), "tok", max_retries=0)
    with pytest.raises(e.FulfillmentTransportError) as info:
        client.get_shipment("fr-1")
    assert "not JSON" in str(info.value)


def test_the_base_url_may_carry_the_api_prefix_and_ids_are_url_quoted():
    client = FulfillmentClient("https://acme.p.newstore.net/v0/d/", "tok")
    assert client.url_for("a/b c", "shipment") == (
        "https://acme.p.newstore.net/v0/d/fulfillment_requests/a%2Fb%20c/shipment")


def test_from_config_reads_url_token_and_timeouts():
    client = FulfillmentClient.from_config({"url": "http://h", "token": "t",
                                            "read_timeout": 2.5, "max_retries": 1})
    assert (client.base_url, client.token, client.timeout, client.max_retries) == (
        "http://h", "t", (3.05, 2.5), 1)


@pytest.mark.parametrize("code", sorted(e.ERROR_CLASSES))
def test_every_known_error_code_maps_to_its_own_class(code):
    err = e.error_from_response(400, {"error_code": code, "error_description": "d",
                                      "conflicting_items": ["x"]})
    assert type(err) is e.ERROR_CLASSES[code]
    assert isinstance(err, e.FulfillmentError)
    assert (err.status, err.error_code, err.conflicting_items) == (400, code, ("x",))


def test_statuses_without_a_code_map_to_401_404_and_5xx_classes():
    assert type(e.error_from_response(401, {})) is e.UnauthorizedError
    assert type(e.error_from_response(404, None)) is e.NotFoundError
    assert type(e.error_from_response(504, {})) is e.ServerError
    assert e.error_from_response(404, {}).error_code == "not_found"


def test_fulfillment_errors_are_part_of_the_atp_bridge_hierarchy():
    from atp_bridge.errors import AtpBridgeError
    assert e.FulfillmentError.__mro__[1] is AtpBridgeError
