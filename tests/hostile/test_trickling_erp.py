"""A real ``atp-bridge serve`` in front of an ERP that sends its headers and then
one body byte a second: a burst of webhook requests is answered at the
deadline, no ERP connection outlives it, and once the ERP is healthy again so
are the answers."""
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from tests.conftest import SPEC_SAMPLE, write_yaml
from tests.erp_server import FakeErp
from tests.serve import BridgeProcess

pytestmark = pytest.mark.slow

DEADLINE_MS = 1500  # longer than the 1 s between two trickled bytes: no read ever times out
SLACK_S = 0.25
BODY = orjson.dumps(SPEC_SAMPLE)
STOCK = {("1000061", "US01"): 5, ("10000211", "DC01"): 2}


def settled(read, expected, timeout):
    end = time.monotonic() + timeout
    while (value := read()) != expected and time.monotonic() < end:
        time.sleep(0.05)
    return value


@pytest.fixture
def trickling_erp():
    with FakeErp() as erp:
        erp.stock, erp.mode, erp.trickle_s = STOCK, "trickle_body", 1.0
        yield erp


@pytest.fixture
def bridge(trickling_erp, tmp_path):
    config = write_yaml(tmp_path / "bridge.yaml", {
        "deadline_ms": DEADLINE_MS,
        "adapter_threads": 64,  # all 40 requests reach the ERP at once (default 16: the rest queue)
        "adapters": [{
        "name": "erp", "type": "rest", "url": f"{trickling_erp.url}/atp",
        "timeout_ms": 5000,  # longer than the deadline: the deadline must cut the calls
        # this test is about calls and connections, so the circuit stays closed; the
        # next test keeps the default circuit, which opens during the burst
        "circuit": {"failure_threshold": 1000, "reset_s": 30}}]})
    log = tmp_path / "bridge.log"  # a file, not a pipe: 40 degraded-answer lines must not block
    process = BridgeProcess(config, workers=1, output=log)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def timed_post(bridge):
    started = time.monotonic()
    resp = bridge.post(BODY, timeout=10)
    return resp, time.monotonic() - started


def test_a_burst_against_a_trickling_erp_leaves_nothing_pinned_and_recovery_is_immediate(
        trickling_erp, bridge):
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: timed_post(bridge), range(40)))

    slowest = max(took for _, took in answers)
    assert slowest < DEADLINE_MS / 1000 + SLACK_S, f"slowest answer after {slowest * 1000:.0f} ms"
    for resp, _ in answers:
        assert resp.status_code == 200
        assert resp.headers["X-ATP-Degraded"] == "timeout:erp"
        assert [a["atp"] for a in resp.json()["availabilities"]] == [0] * 6
    assert len(trickling_erp.requests()) == 40  # 40 calls in flight at once, all trickled

    # every call was cut at its deadline and its connection closed by the bridge
    open_now = settled(lambda: trickling_erp.open_connections, 0, timeout=2.0)
    assert open_now == 0, f"{open_now} ERP connections still open 2 s after the burst"

    trickling_erp.mode = "ok"
    recovered = time.monotonic()
    while True:
        resp, _ = timed_post(bridge)
        if "X-ATP-Degraded" not in resp.headers or time.monotonic() - recovered > 5:
            break
        time.sleep(0.05)
    healthy_after = time.monotonic() - recovered
    assert "X-ATP-Degraded" not in resp.headers, resp.headers["X-ATP-Degraded"]
    assert [a["atp"] for a in resp.json()["availabilities"]] == [5, 0, 0, 0, 0, 2]
    assert healthy_after < 1.0, f"first healthy answer {healthy_after * 1000:.0f} ms after recovery"


def test_with_the_default_circuit_healthy_answers_resume_within_a_second_of_recovery(
        trickling_erp, tmp_path):
    config = write_yaml(tmp_path / "bridge.yaml", {
        "deadline_ms": DEADLINE_MS,
        "adapters": [{"name": "erp", "type": "rest", "url": f"{trickling_erp.url}/atp"}]})
    with BridgeProcess(config, workers=1, output=tmp_path / "bridge.log") as bridge:
        bridge.wait_ready()
        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(lambda _: timed_post(bridge), range(40)))
        reasons = {resp.headers["X-ATP-Degraded"] for resp, _ in answers}
        assert reasons <= {"timeout:erp", "unavailable:erp"} and "unavailable:erp" in reasons  # it opened
        assert max(took for _, took in answers) < DEADLINE_MS / 1000 + SLACK_S

        trickling_erp.mode = "ok"
        recovered = time.monotonic()
        while (resp := timed_post(bridge)[0]).headers.get("X-ATP-Degraded") and \
                time.monotonic() - recovered < 10:
            time.sleep(0.05)
        healthy_after = time.monotonic() - recovered
    assert "X-ATP-Degraded" not in resp.headers
    assert [a["atp"] for a in resp.json()["availabilities"]] == [5, 0, 0, 0, 0, 2]
    assert healthy_after < 1.0 + SLACK_S, f"first healthy answer {healthy_after * 1000:.0f} ms after recovery"
