"""Every ERP call ends within min(timeout_ms, time to deadline) in total, body
included, and within max_response_bytes, against a real trickling or flooding
HTTP server; the connection of a cut call is closed, and the next call works."""
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest
import requests

from atp_bridge.adapters.rest import RestAdapter
from atp_bridge.errors import AdapterError, AdapterTimeout
from tests.adapters.conftest import batch
from tests.erp_server import flood_body

SLACK_S = 0.25  # how far past its budget a call may end: generous, the machine is shared
# Bytes come faster than any per-read timeout here, so only a total budget can end the call.
TRICKLE_S = 0.1
MiB = 1024 * 1024


def timed(call):
    """``(exception raised by call(), seconds it took)``."""
    started = time.monotonic()
    with pytest.raises(AdapterError) as exc:
        call()
    return exc.value, time.monotonic() - started


def settled(read, expected, timeout=3.0):
    """``read()`` once it returns ``expected`` (or its last value after ``timeout``)."""
    end = time.monotonic() + timeout
    while (value := read()) != expected and time.monotonic() < end:
        time.sleep(0.02)
    return value


@pytest.fixture
def stocked(erp):
    erp.stock, erp.trickle_s = {("A", "S1"): 7, ("B", "S1"): 3}, TRICKLE_S
    return erp


def test_a_body_trickled_a_byte_a_second_ends_at_timeout_ms(stocked, rest):
    stocked.mode, stocked.trickle_s = "trickle_body", 1.0  # each read waits < 1 s < timeout_ms
    adapter = rest(timeout_ms=1200)
    error, took = timed(lambda: adapter.fetch(batch("A", ["S1"], seconds=10)))
    assert isinstance(error, AdapterTimeout) and error.reason == "timeout"
    assert error.message.endswith("/atp: incomplete answer: body not complete within 1200 ms")
    assert 1.15 <= took < 1.2 + SLACK_S, f"ended after {took * 1000:.0f} ms"
    assert len(stocked.requests()) == 1  # a cut answer is not retried


def test_trickled_headers_end_at_the_deadline_when_it_comes_first(stocked, rest):
    stocked.mode = "trickle_headers"
    adapter = rest(timeout_ms=10_000)
    error, took = timed(lambda: adapter.fetch(batch("A", ["S1"], seconds=0.4)))
    assert isinstance(error, AdapterTimeout)
    budget_ms = int(error.message.split("within ")[1].split(" ms")[0])
    assert "no answer: headers not complete within" in error.message and 350 <= budget_ms <= 400
    assert took < 0.4 + SLACK_S, f"ended after {took * 1000:.0f} ms"


def test_the_connection_of_a_cut_call_is_closed_and_the_next_call_gets_a_fresh_one(stocked, rest):
    adapter = rest(timeout_ms=400, max_concurrency=1)
    assert adapter.fetch(batch("A", ["S1"])) == [7]
    stocked.mode = "trickle_body"
    timed(lambda: adapter.fetch(batch("A", ["S1"])))
    assert settled(lambda: stocked.open_connections, 0) == 0  # the bridge hung up
    stocked.mode = "ok"
    started = time.monotonic()
    assert adapter.fetch(batch("AB", ["S1"])) == [7, 3]
    assert time.monotonic() - started < SLACK_S
    ok, cut, after = [s.client_port for s in stocked.requests()]
    assert cut == ok  # the healthy connection was kept alive and reused...
    assert after != cut  # ...the cut one was not returned to the pool
    assert adapter.fetch(batch("A", ["S1"])) == [7]
    assert stocked.requests()[-1].client_port == after  # healthy calls keep pooling


def test_concurrent_calls_of_one_request_all_end_within_the_budget(stocked, rest):
    stocked.mode = "trickle_body"
    adapter = rest(timeout_ms=600, batch_size=1, max_concurrency=4)
    error, took = timed(lambda: adapter.fetch(batch("AB", ["S1", "S2"], seconds=10)))
    assert isinstance(error, AdapterTimeout) and "body not complete within 600 ms" in error.message
    assert took < 0.6 + SLACK_S
    assert len(stocked.requests()) == 4
    assert settled(lambda: stocked.open_connections, 0) == 0  # no pool thread still reading


@pytest.mark.parametrize("with_length,message", [
    (True, f"answer body of {sum(map(len, flood_body(2 * MiB)))} bytes (Content-Length) is over "
           f"max_response_bytes={MiB}"),
    (False, f"answer body grew past max_response_bytes={MiB}"),
])
def test_a_body_past_max_response_bytes_is_an_error_naming_the_cap(stocked, rest, with_length, message):
    stocked.mode, stocked.flood_bytes, stocked.flood_length = "flood", 2 * MiB, with_length
    adapter = rest(max_response_bytes=MiB, timeout_ms=5000)
    error, took = timed(lambda: adapter.fetch(batch("A", ["S1"])))
    assert type(error) is AdapterError and error.reason == "error"
    assert error.message.endswith(message)
    assert took < 1.0  # not read to its end
    assert settled(lambda: stocked.open_connections, 0) == 0
    stocked.mode = "ok"
    assert adapter.fetch(batch("A", ["S1"])) == [7]


def test_a_gzip_bomb_is_cut_at_max_response_bytes_decoded_without_holding_it(stocked, rest):
    stocked.mode, stocked.flood_gzip, stocked.flood_bytes = "flood", True, 64 * MiB
    adapter = rest(max_response_bytes=MiB, timeout_ms=5000)
    tracemalloc.start()
    try:
        error, took = timed(lambda: adapter.fetch(batch("A", ["S1"])))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.message.endswith(f"answer body grew past max_response_bytes={MiB}")
    sent = stocked.requests()[0]
    assert "gzip" in sent.headers["accept-encoding"]
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while reading a 64 MiB bomb"


def test_an_answer_within_max_response_bytes_is_read_whole(stocked, rest):
    stocked.stock = {(f"P{i:04d}", "S1"): i for i in range(2000)}  # ~90 kB answer
    products = [f"P{i:04d}" for i in range(2000)]
    adapter = rest(max_response_bytes=128 * 1024, batch_size=2000)
    assert adapter.fetch(batch(products, ["S1"])) == list(range(2000))


def test_a_trickling_token_endpoint_ends_within_timeout_ms(stocked, rest):
    stocked.mode, stocked.hostile_paths = "trickle_body", {"/token"}
    adapter = rest(timeout_ms=500, auth={"type": "oauth2_client_credentials",
                                         "token_url": f"{stocked.url}/token",
                                         "client_id": "c", "client_secret": "s3cr3t-value"})
    error, took = timed(lambda: adapter.fetch(batch("A", ["S1"], seconds=10)))
    assert error.message.endswith("auth: token endpoint: incomplete answer: body not complete "
                                  "within 500 ms")
    assert took < 0.5 + SLACK_S
    assert stocked.requests("/atp") == []


def test_a_trickling_health_url_is_unhealthy_within_timeout_ms(stocked, rest):
    stocked.mode, stocked.hostile_paths = "trickle_headers", {"/health"}
    adapter = rest(timeout_ms=500, health_url=f"{stocked.url}/health")
    started = time.monotonic()
    health = adapter.health()
    took = time.monotonic() - started
    assert (health.ok, health.detail) == (
        False, f"GET {stocked.url}/health: no answer: headers not complete within 500 ms")
    assert took < 0.5 + SLACK_S


def test_a_session_that_cannot_cut_calls_is_refused(stocked):
    with pytest.raises(ValueError, match="BudgetAdapter"):
        RestAdapter("erp", url=f"{stocked.url}/atp", session=requests.Session())


GEVENT_SCRIPT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import json, sys, time
    from atp_bridge.adapters.rest import RestAdapter
    from atp_bridge.adapters.base import Batch
    from atp_bridge.errors import AdapterError
    from tests.erp_server import FakeErp

    erp = FakeErp().start()
    erp.stock, erp.trickle_s = {("A", "S1"): 7}, 0.1
    adapter = RestAdapter("erp", url=erp.url + "/atp", timeout_ms=500, max_concurrency=4,
                          batch_size=1)
    out = {}
    for mode in ("trickle_body", "trickle_headers", "ok"):
        erp.mode = mode
        started = time.monotonic()
        try:
            out[mode] = adapter.fetch(Batch(["A", "B", "C"], ["S1"], time.monotonic() + 10))
        except AdapterError as e:
            out[mode] = e.message.split(": ", 1)[1]
        out[mode + "_s"] = time.monotonic() - started
    print(json.dumps(out))
""")


def test_under_gevent_a_trickled_call_ends_within_its_budget_too(tmp_path):
    script = tmp_path / "gevent_budget.py"
    script.write_text(GEVENT_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": root}, cwd=root)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["trickle_body"] == "incomplete answer: body not complete within 500 ms"
    assert out["trickle_headers"] == "no answer: headers not complete within 500 ms"
    assert out["ok"] == [7, None, None]
    assert out["trickle_body_s"] < 0.5 + SLACK_S and out["trickle_headers_s"] < 0.5 + SLACK_S
