"""429 Too Many Requests: the emulator's --rate-limit (a real process), the
client's Retry-After handling and wait budget, and what the CLI says."""
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import requests
from click.testing import CliRunner
from flask import Flask, Response

from atp_bridge.fulfillment import errors as e
from atp_bridge.fulfillment.cli import fulfillment
from atp_bridge.fulfillment.client import FulfillmentClient
from atp_bridge.fulfillment.ratelimit import describe_waits, parse_retry_after


@pytest.fixture(scope="module")
def limited(start_emulator):
    """One API call per token per second."""
    return start_emulator("--seed", "2", "--rate-limit", "1")


def refused(emulator) -> int:
    return emulator.get("/_emulator/auth")["rate_limited_calls"]


def test_over_the_limit_the_emulator_answers_429_with_retry_after_in_seconds(limited):
    url = f"{limited.url}/v0/d/fulfillment_requests/x/resend"
    headers = {"Authorization": "Bearer raw-429"}
    answers = [requests.post(url, headers=headers, timeout=5) for _ in range(3)]
    too_many = [a for a in answers if a.status_code == 429]
    assert too_many, [a.status_code for a in answers]  # 3 calls span at most 2 windows
    assert too_many[0].headers["Retry-After"] == "1"
    assert too_many[0].json()["error_code"] == "rate_limited"
    other = requests.post(url, headers={"Authorization": "Bearer another-token"}, timeout=5)
    assert other.status_code == 404  # the limit is per token: this one is not limited


def test_the_client_waits_retry_after_and_every_call_succeeds(limited):
    uuid = limited.create([("p1", 5.0), ("p2", 6.0)])["uuid"]
    waits, before = [], refused(limited)
    with FulfillmentClient(limited.url, "tok-client", on_rate_limit=waits.append) as client:
        results = [client.accept(uuid).status for _ in range(3)]  # 3 calls > 1 per second
        results.append(client.cancel_items(uuid, ["p2"]).status)  # a 429'd cancel is resent
    assert results == [200, 200, 200, 201]
    assert waits and all(w == 1.0 for w in waits)
    assert refused(limited) - before == len(waits)
    units = limited.get(f"/_emulator/fulfillment_requests/{uuid}")["items"]
    assert [u["status"] for u in units] == ["open", "canceled"]  # exactly one cancel applied


def test_a_wait_past_the_budget_raises_rate_limited_at_once(limited):
    slept = []
    client = FulfillmentClient(limited.url, "tok-budget", rate_limit_budget_s=0.5,
                               sleep=slept.append)
    err = None
    for _ in range(3):  # 3 calls span at most 2 windows of 1 call
        try:
            client.resend("none")
        except e.NotFoundError:
            continue  # let through: the id is unknown
        except e.RateLimitedError as limited_error:
            err = limited_error
            break
    assert err is not None
    assert (err.status, err.retry_after_s, err.waited_s) == (429, 1.0, 0.0)
    assert "rate limited by NewStore (Retry-After 1 s); waiting would pass the 0.5 s wait " \
           "budget of this call" in str(err)
    assert slept == []  # no sleep that could not end in a success


def retry_after_app(values):
    """Answers 429 with each ``Retry-After`` of ``values`` in turn, then 200."""
    app = Flask("retry-after")
    app.calls = 0

    @app.post("/v0/d/fulfillment_requests/<uuid>/acknowledgement")
    def accept(uuid):
        app.calls += 1
        if app.calls <= len(values):
            headers = {} if values[app.calls - 1] is None else {
                "Retry-After": values[app.calls - 1]}
            return Response('{"error_code": "too_many"}', 429, headers,
                            content_type="application/json")
        return Response(status=200)

    return app


def test_retry_after_as_an_http_date_is_waited_until_that_time(serve):
    when = datetime.now(timezone.utc) + timedelta(seconds=3)
    app = retry_after_app([format_datetime(when, usegmt=True)])
    slept = []
    client = FulfillmentClient(serve(app), "t", sleep=slept.append)
    assert client.accept("fr-1").status == 200
    assert app.calls == 2 and len(slept) == 1
    assert 1.0 < slept[0] <= 3.0  # whole seconds in the date, minus the time since


def test_without_retry_after_the_wait_doubles_and_the_budget_still_bounds_it(serve):
    app = retry_after_app([None, None, None, None])
    slept = []
    client = FulfillmentClient(serve(app), "t", rate_limit_budget_s=5, sleep=slept.append)
    with pytest.raises(e.RateLimitedError) as info:
        client.accept("fr-1")
    assert slept == [1.0, 2.0]  # a third wait (4 s) would pass 5 s in total
    assert info.value.waited_s == 3.0 and "no usable Retry-After" in str(info.value)
    assert info.value.error_code == "too_many"  # the server's own code is kept


def test_parse_retry_after_reads_seconds_and_dates():
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:05 GMT", now) == 5.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:27:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_the_cli_says_it_was_rate_limited_and_how_long_it_waited(serve):
    url = serve(retry_after_app(["1"]))
    result = CliRunner().invoke(fulfillment, ["accept", "fr-1", "--url", url, "--token", "t"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Accepted fulfillment request fr-1 (HTTP 200).\n"
    assert result.stderr == "Note: rate limited by NewStore, retried after 1 s.\n"


def test_the_cli_explains_a_wait_budget_it_could_not_keep(serve):
    url = serve(retry_after_app(["120"]))
    result = CliRunner().invoke(fulfillment, ["accept", "fr-1", "--url", url, "--token", "t",
                                              "--rate-limit-wait", "10", "--json"])
    assert result.exit_code == 1
    import json
    error = json.loads(result.stderr)["error"]
    assert error["status"] == 429
    assert error["message"] == ("accept failed: HTTP 429 too_many: rate limited by NewStore "
                                "(Retry-After 120 s); waiting would pass the 10 s wait budget "
                                "of this call")
    assert "--rate-limit-wait" in error["hint"]


def test_describe_waits_sums_several():
    assert describe_waits([1.0, 2.0]) == "rate limited by NewStore 2 times, retried after 3 s " \
                                         "in total"
    assert describe_waits([]) == ""
