"""Item 1: idle and slow connections never stall a real request.

200 connections that send nothing and 50 slowloris connections (a request
head, or a body, trickling a byte every 2 s) stay open while a normal client
asks on new connections. Under gthread each of them held a thread: eight idle
sockets delayed the next request by ~5 s and this load made it time out. The
typical latency (median under 100 ms) is measured by the benchmark
(docs/benchmarks.md); here every answer must arrive within deadline_ms + 250 ms.
"""
import socket

import orjson
import pytest

from tests.conftest import write_yaml
from tests.hostile.conftest import BODY, exchange, post_head, split
from tests.bench.hostile import latencies
from tests.serve import BridgeProcess

pytestmark = pytest.mark.slow

DEADLINE_MS = 1500
SAMPLE = {"name": "sample", "type": "csv", "path": "sample.csv"}


@pytest.fixture
def bridge(tmp_path):
    from atp_bridge.config import default_config_path

    (tmp_path / "sample.csv").write_bytes((default_config_path().parent / "sample.csv").read_bytes())
    config = write_yaml(tmp_path / "bridge.yaml", {"deadline_ms": DEADLINE_MS, "adapters": [SAMPLE]})
    with BridgeProcess(config, workers=2) as served:
        yield served.wait_ready()


def test_a_request_is_answered_in_time_with_200_idle_and_50_slowloris_connections(bridge):
    # the benchmark's own measurement (tests/bench/hostile.py): every request on a new
    # connection, each checked to be a 200, while the idle and trickling ones stay open
    measured = latencies(bridge.port, 40, idle=200, slow=50)
    assert measured["max"] < DEADLINE_MS + 250, measured
    assert measured["p50"] < 500, measured  # measured: ~1 ms; gthread: timeouts
    answer, _ = exchange(bridge.port, post_head("/availabilities", b"Connection: close\r\n") + BODY)
    status, _, body = split(answer)
    assert (status, orjson.loads(body)["availabilities"][0]["atp"]) == (200, 10)


def test_eight_idle_connections_do_not_delay_the_next_request(bridge):
    idle = [socket.create_connection(("127.0.0.1", bridge.port)) for _ in range(8)]
    try:
        answer, took = exchange(bridge.port, post_head("/availabilities", b"Connection: close\r\n") + BODY)
    finally:
        for s in idle:
            s.close()
    assert split(answer)[0] == 200
    assert took < (DEADLINE_MS + 250) / 1000  # gthread with 8 threads: ~5 s
