"""`atp-bridge serve` as a real gunicorn process: exact metrics across workers,
graceful SIGTERM, JSON logs; and the metrics directory it prepares."""
import os
import re
import signal
import threading
import time

import orjson
import pytest

from atp_bridge import server
from tests.conftest import SPEC_SAMPLE, write_yaml

pytestmark = pytest.mark.slow

KEY = "ns-webhook-key-0123456789abcdef"
STATIC = {"name": "stock", "type": "static", "values": {"US01": {"1000061": 7}}}
BODY = orjson.dumps(SPEC_SAMPLE)


def counter(text: str, route: str, status: str = "200") -> float:
    m = re.search(rf'^atp_bridge_requests_total\{{route="{re.escape(route)}",status="{status}"\}} (\S+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def settled_metrics(served, route: str, expected: float, timeout: float = 15) -> str:
    """``/metrics`` once ``route``'s 200 count reached ``expected`` (or after
    ``timeout``): each worker writes its batched counts within metrics.FLUSH_S."""
    end = time.monotonic() + timeout
    while True:
        text = served.get("/metrics").text
        if counter(text, route) >= expected or time.monotonic() > end:
            return text
        time.sleep(0.1)


def workers_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_metrics_count_exactly_across_two_workers(serve, tmp_path):
    served = serve(write_yaml(tmp_path / "c.yaml", {"adapters": [STATIC]}), workers=2)
    n = 60
    for _ in range(n):
        assert served.post(BODY).status_code == 200
    resp = served.get("/metrics")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = settled_metrics(served, "/availabilities", n)
    assert counter(text, "/availabilities") == n
    assert re.search(r"^atp_bridge_request_pairs_count (\S+)$", text, re.M).group(1) == f"{float(n)}"
    # served by a MultiProcessCollector (the default registry would add process_* metrics)
    assert "process_cpu_seconds_total" not in text


def test_counts_of_a_worker_that_exited_stay_in_the_totals(serve, tmp_path):
    served = serve(write_yaml(tmp_path / "c.yaml", {"adapters": [STATIC]}), workers=2)
    for _ in range(10):
        served.post(BODY)
    old = workers_of(served.proc.pid)
    os.kill(old[0], signal.SIGTERM)  # gunicorn replaces it; child_exit marks it dead
    give_up = time.monotonic() + 15
    while time.monotonic() < give_up and (len(workers_of(served.proc.pid)) < 2
                                          or old[0] in workers_of(served.proc.pid)):
        time.sleep(0.1)
    for _ in range(5):
        served.post(BODY)
    # the exited worker wrote its pending counts at exit
    assert counter(settled_metrics(served, "/availabilities", 15), "/availabilities") == 15


def test_sigterm_lets_an_in_flight_request_finish(serve, tmp_path):
    slow = {"name": "slow-erp", "type": "failing", "mode": "sleep", "sleep_s": 1.5}
    served = serve(write_yaml(tmp_path / "c.yaml", {"deadline_ms": 5000, "adapters": [slow]}))
    result = {}

    def ask():
        result["answer"] = served.post(BODY, timeout=10)

    t = threading.Thread(target=ask)
    t.start()
    time.sleep(0.5)  # the request is inside the adapter now
    served.proc.send_signal(signal.SIGTERM)
    t.join(10)
    answer = result["answer"]
    assert answer.status_code == 200 and answer.headers.get("X-ATP-Degraded") is None
    assert {r["atp"] for r in answer.json()["availabilities"]} == {1}
    rc, _ = served.stop()
    assert rc == 0


def open_sockets(pid: int) -> int:
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))


def test_sigkill_of_a_worker_loses_only_the_requests_in_flight_on_it(serve, tmp_path):
    import requests

    slow = {"name": "slow-erp", "type": "failing", "mode": "sleep", "sleep_s": 1.5}
    served = serve(write_yaml(tmp_path / "c.yaml", {"deadline_ms": 5000, "adapters": [slow]}), workers=2)
    end = time.monotonic() + 15
    while len(workers := workers_of(served.proc.pid)) < 2 and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(0.5)  # both workers listening
    idle = {pid: open_sockets(pid) for pid in workers}
    outcomes = []

    def ask():
        try:
            r = requests.post(served.url + "/availabilities", data=BODY, timeout=10,
                              headers={"Connection": "close"})
            outcomes.append((r.status_code, r.headers.get("X-ATP-Degraded"),
                             tuple(a["atp"] for a in r.json()["availabilities"])))
        except requests.ConnectionError:
            outcomes.append("lost")

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    end = time.monotonic() + 1.0  # every request accepted and inside the adapter (1.5 s)
    while sum((in_flight := {pid: open_sockets(pid) - idle[pid] for pid in workers}).values()) < 12 \
            and time.monotonic() < end:
        time.sleep(0.02)
    victim = max(in_flight, key=in_flight.get)  # the worker holding more of them
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(15)
    lost = outcomes.count("lost")
    assert len(outcomes) == 12 and sum(in_flight.values()) == 12
    assert lost == in_flight[victim] >= 6  # exactly its own requests, nobody else's
    # (gevent workers balance under CPU load; 12 sleeping requests may all sit on one)
    assert set(outcomes) - {"lost"} == {(200, None, (1,) * 6)}
    # the master stays and replaces the worker; new requests are all answered
    end = time.monotonic() + 15
    while time.monotonic() < end and (len(workers_of(served.proc.pid)) < 2
                                      or victim in workers_of(served.proc.pid)):
        time.sleep(0.1)
    assert victim not in workers_of(served.proc.pid) and len(workers_of(served.proc.pid)) == 2
    after = [served.post(BODY, timeout=10) for _ in range(4)]
    assert [(r.status_code, r.headers.get("X-ATP-Degraded")) for r in after] == [(200, None)] * 4
    assert served.proc.poll() is None


def test_logs_are_json_lines_with_an_access_line_and_no_secret(serve, tmp_path):
    # lines held for a minute: all of them must still be written when the processes exit
    served = serve(write_yaml(tmp_path / "c.yaml", {"auth": {"api_keys": [KEY]}, "adapters": [STATIC]}),
                   env={"ATP_BRIDGE_LOG_FLUSH_MS": "60000"})
    assert served.post(BODY, headers={"Authorization": f"Bearer {KEY}",
                                      "X-Request-ID": "nsreq-42"}).status_code == 200
    assert served.post(BODY, headers={"Authorization": "z" * 32}).status_code == 401
    _, err = served.stop()
    lines = [orjson.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line.get("msg") == "access"]
    assert [(a["request_id"], a["status"], a["pairs"]) for a in access][:1] == [("nsreq-42", 200, 6)]
    assert access[1]["status"] == 401
    assert any(line["logger"].startswith("gunicorn") for line in lines)
    # one access line per request, ours: gunicorn builds none (GunicornLogger)
    assert len(access) == 2 and not any(line["logger"] == "gunicorn.access" for line in lines)
    assert KEY not in err and "z" * 32 not in err
    messages = [line["msg"] for line in lines]
    assert messages[0] == "Starting gunicorn " + __import__("gunicorn").__version__  # the master's first
    assert "Shutting down: Master" in messages  # and its last, at exit


def test_prepare_metrics_dir_creates_a_temporary_directory_owned_by_this_process(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    path, created, owner = server.prepare_metrics_dir()
    try:
        assert created and path.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
        server.cleanup_metrics_dir(path, created, owner + 1)  # a forked worker must not remove it
        assert path.is_dir()
    finally:
        server.cleanup_metrics_dir(path, created, owner)
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert not path.exists()


def test_prepare_metrics_dir_empties_a_given_directory_and_keeps_it(monkeypatch, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "README").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    path, created, owner = server.prepare_metrics_dir()
    server.cleanup_metrics_dir(path, created, owner)
    assert path == tmp_path and not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README"]
