"""Metrics through the Flask test client: counts, histograms, the /metrics route."""
import pytest
from prometheus_client import REGISTRY

from atp_bridge import create_app, metrics
from tests.conftest import SPEC_SAMPLE

VALUES = {"US01": {"1000061": 3}}


def sample(name, **labels):
    metrics.flush()  # hot-path metrics are written in batches
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def client(config_file):
    def make(*adapters, **server):
        adapters = adapters or ({"name": "stock", "type": "static", "values": VALUES},)
        return create_app(str(config_file({**server, "adapters": list(adapters)}))).test_client()
    return make


def test_every_request_is_counted_by_route_and_status(client):
    c = client()
    before_ok = sample("atp_bridge_requests_total", route="/availabilities", status="200")
    before_bad = sample("atp_bridge_requests_total", route="/availabilities", status="400")
    before_404 = sample("atp_bridge_requests_total", route="(unmatched)", status="404")
    for _ in range(3):
        assert c.post("/availabilities", json=SPEC_SAMPLE).status_code == 200
    before_405 = sample("atp_bridge_requests_total", route="/availabilities", status="405")
    c.post("/availabilities", data=b"{", content_type="application/json")
    c.get("/no/such/route/123")
    c.get("/availabilities/")  # no rule has the trailing slash
    assert c.get("/availabilities").status_code == 405  # a known route, the wrong method
    assert sample("atp_bridge_requests_total", route="/availabilities", status="200") - before_ok == 3
    assert sample("atp_bridge_requests_total", route="/availabilities", status="400") - before_bad == 1
    assert sample("atp_bridge_requests_total", route="/availabilities", status="405") - before_405 == 1
    assert sample("atp_bridge_requests_total", route="(unmatched)", status="404") - before_404 == 2


def test_latency_and_pairs_histograms_observe_each_webhook_call(client):
    c = client()
    lat = sample("atp_bridge_request_duration_seconds_count", route="/newstore_api/v0/availabilities")
    pairs_sum = sample("atp_bridge_request_pairs_sum")
    pairs_n = sample("atp_bridge_request_pairs_count")
    c.post("/newstore_api/v0/availabilities", json=SPEC_SAMPLE)
    assert sample("atp_bridge_request_duration_seconds_count",
                  route="/newstore_api/v0/availabilities") - lat == 1
    assert sample("atp_bridge_request_pairs_sum") - pairs_sum == 6
    assert sample("atp_bridge_request_pairs_count") - pairs_n == 1


def test_adapter_latency_and_errors_are_counted_per_adapter(client):
    c = client({"name": "m-ok", "type": "static"}, {"name": "m-bad", "type": "failing", "locations": ["DC*"]},
               on_error="zero_failed")
    ok_n = sample("atp_bridge_adapter_duration_seconds_count", adapter="m-ok")
    bad_n = sample("atp_bridge_adapter_duration_seconds_count", adapter="m-bad")
    errs = sample("atp_bridge_adapter_errors_total", adapter="m-bad", reason="error")
    c.post("/availabilities", json=SPEC_SAMPLE)
    assert sample("atp_bridge_adapter_duration_seconds_count", adapter="m-ok") - ok_n == 1
    assert sample("atp_bridge_adapter_duration_seconds_count", adapter="m-bad") - bad_n == 1
    assert sample("atp_bridge_adapter_errors_total", adapter="m-bad", reason="error") - errs == 1
    assert sample("atp_bridge_adapter_errors_total", adapter="m-ok", reason="error") == 0


def test_degraded_answers_are_counted_by_reason(client):
    c = client({"name": "m-slow", "type": "failing", "mode": "sleep", "sleep_s": 0.3}, deadline_ms=50)
    before = sample("atp_bridge_degraded_total", reason="timeout:m-slow")
    resp = c.post("/availabilities", json=SPEC_SAMPLE)
    assert resp.headers["X-ATP-Degraded"] == "timeout:m-slow"
    assert sample("atp_bridge_degraded_total", reason="timeout:m-slow") - before == 1


def test_the_metrics_route_serves_the_prometheus_text_format(client):
    c = client()
    c.post("/availabilities", json=SPEC_SAMPLE)
    resp = c.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    for name in ("atp_bridge_requests_total", "atp_bridge_request_duration_seconds_bucket",
                 "atp_bridge_request_pairs_bucket", "atp_bridge_adapter_duration_seconds_bucket"):
        assert name in text
    for declared in ("atp_bridge_cache_total", "atp_bridge_csv_reloads_total", "atp_bridge_csv_rows",
                     "atp_bridge_circuit_state", "atp_bridge_degraded_total", "atp_bridge_adapter_errors_total"):
        assert f"# TYPE {declared}" in text or f"# TYPE {declared.removesuffix('_total')}" in text


def test_adapters_written_elsewhere_have_a_tiny_api_for_their_metrics():
    metrics.CACHE.labels("m-cache", "hit").inc(5)
    metrics.CSV_RELOADS.labels("m-csv", "ok").inc()
    metrics.CSV_ROWS.labels("m-csv").set(42)
    metrics.CIRCUIT_STATE.labels("m-erp").set(metrics.CIRCUIT_OPEN)
    assert sample("atp_bridge_cache_total", adapter="m-cache", result="hit") == 5
    assert sample("atp_bridge_csv_rows", adapter="m-csv") == 42
    assert sample("atp_bridge_circuit_state", adapter="m-erp") == 2


def test_multiprocess_mode_is_used_when_the_directory_is_set(tmp_path, monkeypatch):
    # values written by a "worker" into the directory are what /metrics renders
    from prometheus_client import CollectorRegistry, Counter, values
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    Counter("atp_bridge_mp_probe_total", "probe", ["x"], registry=CollectorRegistry()).labels("y").inc(7)
    body, _ = metrics.render()
    assert b'atp_bridge_mp_probe_total{x="y"} 7.0' in body
    assert list(tmp_path.glob("counter_*.db"))


# -- what the built-in adapters record -------------------------------------------

def test_csv_loads_are_counted_and_the_row_count_is_a_gauge(tmp_path):
    from atp_bridge.adapters.csv_file import CsvAdapter
    path = tmp_path / "s.csv"
    path.write_text("product,location,atp\nA,S1,1\nB,S1,2\n")
    ok_before = sample("atp_bridge_csv_reloads_total", adapter="m-csv", result="ok")
    adapter = CsvAdapter("m-csv", path=str(path), reload_interval_s=None)
    try:
        assert sample("atp_bridge_csv_reloads_total", adapter="m-csv", result="ok") == ok_before + 1
        assert sample("atp_bridge_csv_rows", adapter="m-csv") == 2
        path.write_text("product,location,atp\nA,S1,oops\n")
        assert adapter.reload_now() is False
        assert sample("atp_bridge_csv_reloads_total", adapter="m-csv", result="error") >= 1
        assert sample("atp_bridge_csv_rows", adapter="m-csv") == 2  # still serving the old table
    finally:
        adapter.close()


def test_the_circuit_state_gauge_follows_the_breaker(rest_circuit_adapter):
    adapter, fail = rest_circuit_adapter
    assert sample("atp_bridge_circuit_state", adapter="m-erp") == 0
    fail()
    assert sample("atp_bridge_circuit_state", adapter="m-erp") == metrics.CIRCUIT_OPEN


@pytest.fixture
def rest_circuit_adapter():
    import time

    from atp_bridge.adapters.base import Batch
    from atp_bridge.adapters.rest import RestAdapter
    from tests.serve import free_port
    adapter = RestAdapter("m-erp", url=f"http://127.0.0.1:{free_port()}/atp", retries=0,
                          circuit={"failure_threshold": 1, "reset_s": 60})
    metrics.CIRCUIT_STATE.labels("m-erp").set(metrics.CIRCUIT_CLOSED)

    def fail():
        with pytest.raises(Exception):
            adapter.fetch(Batch(["A"], ["S1"], time.monotonic() + 2))
    yield adapter, fail
    adapter.close()


def test_cache_hits_and_misses_are_counted_in_pairs(redis_db, make_cache):
    cache = make_cache(redis_db.url)
    hits = sample("atp_bridge_cache_total", adapter="m-cache", result="hit")
    misses = sample("atp_bridge_cache_total", adapter="m-cache", result="miss")
    import time

    from atp_bridge.adapters.base import Batch
    batch = lambda: Batch(["1000061", "X"], ["US01"], time.monotonic() + 2)  # noqa: E731
    assert cache.fetch(batch()) == [3, None]
    assert cache.fetch(batch()) == [3, None]
    assert sample("atp_bridge_cache_total", adapter="m-cache", result="miss") == misses + 2
    assert sample("atp_bridge_cache_total", adapter="m-cache", result="hit") == hits + 2


@pytest.fixture
def make_cache():
    from atp_bridge.adapters.redis_cache import RedisAdapter
    from tests.fake_adapters import StaticAdapter
    made = []

    def make(url):
        import redis
        made.append(RedisAdapter("m-cache", mode="cache", client=redis.Redis.from_url(url),
                                 upstream=StaticAdapter("erp", values=VALUES)))
        return made[-1]
    yield make
    for a in made:
        a.close()


def test_a_batched_histogram_fills_the_same_buckets_as_observe():
    from prometheus_client import CollectorRegistry, Histogram
    h = Histogram("t_batched", "x", ["way"], buckets=(0.001, 0.01, 1.0), registry=CollectorRegistry())
    values = [0.0, 0.0005, 0.001, 0.001000001, 0.01, 0.5, 1.0, 1.5, 1e9]  # on, under and over bounds
    direct, handle = h.labels("direct"), metrics.batched(h.labels("batched"))
    for v in values:
        direct.observe(v)
        handle.observe(v)
    assert [b.get() for b in h.labels("batched")._buckets] == [0, 0, 0, 0]  # not written yet
    metrics.flush()
    assert [b.get() for b in h.labels("batched")._buckets] == [b.get() for b in direct._buckets] == [3, 2, 2, 2]
    assert h.labels("batched")._sum.get() == direct._sum.get() == sum(values)
    metrics.flush()  # nothing pending: nothing added twice
    assert h.labels("batched")._sum.get() == sum(values)


def test_a_batched_counter_adds_up_and_a_fork_does_not_write_its_parents_pending_counts():
    import os

    from prometheus_client import CollectorRegistry, Counter
    c = Counter("t_batched_counter", "x", registry=CollectorRegistry())
    handle = metrics.batched(c)
    handle.inc()
    handle.inc(4)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        metrics.flush()
        os.write(write, str(c._value.get()).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 64) == b"0.0"  # the child dropped what its parent had pending
    os.close(read)
    metrics.flush()
    assert c._value.get() == 5


def test_a_scrape_includes_this_process_s_latest_counts(client):
    c = client()
    before = sample("atp_bridge_requests_total", route="/availabilities", status="200")
    c.post("/availabilities", json=SPEC_SAMPLE)
    text = c.get("/metrics").text  # render() flushes first
    line = next(ln for ln in text.splitlines()
                if ln.startswith('atp_bridge_requests_total{route="/availabilities",status="200"}'))
    assert float(line.split()[-1]) == before + 1


def test_a_process_writes_its_pending_batched_counts_when_it_exits(tmp_path):
    import subprocess
    import sys

    from prometheus_client import CollectorRegistry, multiprocess

    from tests.serve import subprocess_env
    child = ("from atp_bridge import metrics\n"
             "metrics.batched(metrics.REQUESTS.labels('/availabilities', '200')).inc(7)\n"
             "metrics.batched(metrics.PAIRS).observe(6)\n")  # exits at once: before the first flush
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60,
                   env=subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    assert registry.get_sample_value("atp_bridge_requests_total",
                                     {"route": "/availabilities", "status": "200"}) == 7
    assert registry.get_sample_value("atp_bridge_request_pairs_count") == 1
    assert registry.get_sample_value("atp_bridge_request_pairs_sum") == 6
