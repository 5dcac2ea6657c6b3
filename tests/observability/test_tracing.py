"""Traces: real ``atp-bridge serve`` processes export to a real OTLP/HTTP receiver
on loopback (tests/otlp_receiver.py decodes what arrives with opentelemetry-proto),
asking a real ERP stand-in and a real redis-server."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.erp_server import FakeErp
from tests.otlp_receiver import OtlpReceiver
from tests.serve import ROOT, subprocess_env

pytestmark = pytest.mark.slow

SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP SpanKind numbers
ERROR = 2  # OTLP status code
BODY = {"products": [{"product_id": "ns-1", "external_identifier": "P1"},
                     {"product_id": "ns-2", "external_identifier": "P2"}],
        "fulfillment_locations": ["S1", "S2", "S3"]}


OTEL_HINT = ('the tracing tests need OpenTelemetry (the "otel" and "test" extras): '
             'pip install "opentelemetry-sdk>=1.27" "opentelemetry-exporter-otlp-proto-http>=1.27"')


@pytest.fixture(autouse=True, scope="module")
def _require_otel():
    """A missing OpenTelemetry fails loudly with the install hint, never as a skip."""
    import importlib.util

    for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http", "opentelemetry.proto"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            pytest.fail(f"{name} is not installed; {OTEL_HINT}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_outside_otel(monkeypatch):
    """Only what a test sets reaches its bridge (subprocess_env copies os.environ)."""
    import os

    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def receiver():
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture
def erp():
    with FakeErp() as server:
        server.stock = {("P1", "S1"): 5, ("P2", "S3"): 7}
        yield server


def otel_env(rx: OtlpReceiver, **extra) -> dict:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50", **extra}


def write_config(tmp_path, erp_url: str, redis_url: str | None = None):
    # the query string stands for a key sent in the URL: it must not reach a span
    doc = ["adapters:",
           "  - name: erp", "    type: rest", f"    url: {erp_url}/atp?api_key=qs-secret-123",
           "    retries: 0"]
    if redis_url:
        doc += ["  - name: cache", "    type: redis", "    mode: cache", "    upstream: erp",
                f"    url: {redis_url}"]
    path = tmp_path / "atp-bridge.yaml"
    path.write_text("\n".join(doc) + "\n")
    return path


def by_name(spans, trace_id: str) -> dict:
    out = {}
    for s in spans:
        if s.trace_id == trace_id:
            out.setdefault(s.name, []).append(s)
    return out


def test_one_webhook_request_is_one_trace_from_the_request_to_the_erp_and_redis(
        tmp_path, serve, receiver, erp, redis_db):
    bridge = serve(write_config(tmp_path, erp.url, redis_db.url), env=otel_env(receiver))
    r = bridge.post(BODY)
    assert r.status_code == 200 and "X-ATP-Degraded" not in r.headers
    assert [a["atp"] for a in r.json()["availabilities"]] == [5, 0, 0, 0, 0, 7]
    rid = r.headers["X-Request-ID"]

    spans = receiver.wait_for(lambda s: len(s) >= 6)
    assert receiver.bad == []
    (root,) = [s for s in spans if s.name == "POST /availabilities"]
    tree = by_name(spans, root.trace_id)
    assert set(tree) == {"POST /availabilities", "adapter cache", "MGET", "adapter erp", "POST", "SET"}
    assert all(len(v) == 1 for v in tree.values())
    (cache,), (mget,), (upstream,), (call,), (setex,) = (
        tree[n] for n in ("adapter cache", "MGET", "adapter erp", "POST", "SET"))

    # the tree: request -> cache adapter -> (MGET, upstream adapter -> ERP call, SET)
    assert root.parent_id == "" and root.kind == SERVER
    assert cache.parent_id == root.span_id and cache.kind == INTERNAL
    assert mget.parent_id == cache.span_id == setex.parent_id == upstream.parent_id
    assert call.parent_id == upstream.span_id and call.kind == CLIENT == mget.kind

    assert root.attributes["atp_bridge.request_id"] == rid
    assert root.attributes["http.route"] == "/availabilities"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["atp_bridge.pairs"] == 6
    assert root.attributes["atp_bridge.adapters"] == ["cache"]
    assert root.status_code != ERROR and "atp_bridge.degraded" not in root.attributes
    assert root.resource["service.name"] == "atp-bridge"

    assert cache.attributes == {
        "atp_bridge.adapter.name": "cache", "atp_bridge.adapter.type": "redis",
        "atp_bridge.adapter.pairs": 6, "atp_bridge.adapter.products": 2, "atp_bridge.adapter.locations": 3,
        "atp_bridge.adapter.outcome": "ok", "atp_bridge.adapter.known": 2}
    assert upstream.attributes["atp_bridge.adapter.type"] == "rest"
    assert upstream.attributes["atp_bridge.adapter.outcome"] == "ok"
    assert mget.attributes["db.system.name"] == "redis" and mget.attributes["atp_bridge.redis.keys"] == 6
    assert mget.attributes["server.port"] == redis_db.port
    assert setex.attributes["db.operation.name"] == "SET" and setex.attributes["atp_bridge.redis.keys"] == 6

    assert call.attributes["http.request.method"] == "POST"
    assert call.attributes["url.full"] == f"{erp.url}/atp"  # no query string: it may hold a key
    assert call.attributes["http.response.status_code"] == 200
    everything = json.dumps([s.attributes for s in spans])
    assert "qs-secret-123" not in everything and '"P1"' not in everything  # no keys, no values

    # the ERP was told the trace: its traceparent names this trace and the call's span
    (seen,) = erp.requests("/atp")
    assert seen.headers["traceparent"].split("-")[1:3] == [root.trace_id, call.span_id]


def test_a_cache_bypassing_a_dead_redis_shows_the_failed_read_and_the_upstream_answering(
        tmp_path, serve, receiver, erp, own_redis):
    bridge = serve(write_config(tmp_path, erp.url, own_redis.url), env=otel_env(receiver))
    own_redis.stop()
    r = bridge.post(BODY)
    assert r.status_code == 200 and "X-ATP-Degraded" not in r.headers  # on_redis_error: bypass
    assert [a["atp"] for a in r.json()["availabilities"]] == [5, 0, 0, 0, 0, 7]
    spans = receiver.wait_for(lambda s: len(s) >= 4)
    tree = by_name(spans, spans[0].trace_id)
    assert set(tree) == {"POST /availabilities", "adapter cache", "MGET", "adapter erp", "POST"}  # no SET
    (cache,), (mget,), (upstream,) = tree["adapter cache"], tree["MGET"], tree["adapter erp"]
    assert mget.status_code == ERROR and mget.attributes["error.type"] == "ConnectionError"
    assert mget.parent_id == upstream.parent_id == cache.span_id
    assert cache.attributes["atp_bridge.adapter.outcome"] == "ok" and cache.status_code != ERROR


def test_erp_calls_made_in_parallel_are_each_a_child_of_their_adapter(tmp_path, serve, receiver, erp):
    # batch_size 2 over 6 pairs: 3 calls, two of them from the REST adapter's helper pool
    path = write_config(tmp_path, erp.url)
    path.write_text(path.read_text() + "    batch_size: 2\n    max_concurrency: 3\n")
    bridge = serve(path, env=otel_env(receiver))
    r = bridge.post(BODY)
    assert [a["atp"] for a in r.json()["availabilities"]] == [5, 0, 0, 0, 0, 7]
    spans = receiver.wait_for(lambda s: len(s) >= 5)
    tree = by_name(spans, spans[0].trace_id)
    (adapter,), calls = tree["adapter erp"], tree["POST"]
    assert len(calls) == 3 and {c.parent_id for c in calls} == {adapter.span_id}
    sent = {s.headers["traceparent"].split("-")[2] for s in erp.requests("/atp")}
    assert sent == {c.span_id for c in calls}


def test_every_worker_exports_its_own_spans(tmp_path, serve, receiver, erp):
    bridge = serve(write_config(tmp_path, erp.url), workers=2, env=otel_env(receiver))
    rids = set()
    for _ in range(20):  # a new connection each: the kernel spreads them over the workers
        rids.add(requests.post(bridge.url + "/availabilities", json=BODY, timeout=30,
                               headers={"Connection": "close"}).headers["X-Request-ID"])
    spans = receiver.wait_for(lambda s: sum(x.name == "POST /availabilities" for x in s) >= 20)
    assert {s.attributes["atp_bridge.request_id"] for s in spans if s.name == "POST /availabilities"} == rids


def test_a_caller_traceparent_is_continued(tmp_path, serve, receiver, erp):
    bridge = serve(write_config(tmp_path, erp.url), env=otel_env(receiver))
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = bridge.post(BODY, headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
    assert r.status_code == 200
    spans = receiver.wait_for(lambda s: any(x.name == "POST /availabilities" for x in s))
    (root,) = [s for s in spans if s.name == "POST /availabilities"]
    assert (root.trace_id, root.parent_id) == (caller_trace, caller_span)
    assert erp.requests("/atp")[0].headers["traceparent"].split("-")[1] == caller_trace


def test_a_degraded_answer_marks_the_request_and_the_failed_adapter(tmp_path, serve, receiver, erp):
    erp.mode = "error"  # 500 to every call; retries: 0
    bridge = serve(write_config(tmp_path, erp.url), env=otel_env(receiver))
    r = bridge.post(BODY)
    assert r.status_code == 200 and r.headers["X-ATP-Degraded"] == "error:erp"
    assert {a["atp"] for a in r.json()["availabilities"]} == {0}
    spans = receiver.wait_for(lambda s: len(s) >= 3)
    tree = by_name(spans, spans[0].trace_id)
    (root,), (adapter,), (call,) = tree["POST /availabilities"], tree["adapter erp"], tree["POST"]
    assert root.status_code == ERROR and root.status_message == "degraded: error:erp"
    assert root.attributes["atp_bridge.degraded"] == "error:erp"
    assert root.attributes["atp_bridge.request_id"] == r.headers["X-Request-ID"]
    assert adapter.status_code == ERROR
    assert adapter.attributes["atp_bridge.adapter.outcome"] == "error"
    assert adapter.attributes["atp_bridge.adapter.error"] == "error"
    assert "HTTP 500" in adapter.status_message and "qs-secret-123" not in adapter.status_message
    assert call.status_code == ERROR and call.attributes["http.response.status_code"] == 500
    assert call.attributes["error.type"] == "500"


def test_a_deadline_overrun_is_a_timeout_on_the_adapter_span(tmp_path, serve, receiver, erp):
    erp.mode, erp.slow_s = "slow", 1.0
    path = write_config(tmp_path, erp.url)
    path.write_text("deadline_ms: 300\n" + path.read_text())
    bridge = serve(path, env=otel_env(receiver))
    r = bridge.post(BODY)
    assert r.headers["X-ATP-Degraded"] == "timeout:erp"
    spans = receiver.wait_for(lambda s: len(s) >= 3)
    tree = by_name(spans, spans[0].trace_id)
    (adapter,), (call,) = tree["adapter erp"], tree["POST"]
    assert tree["POST /availabilities"][0].attributes["atp_bridge.degraded"] == "timeout:erp"
    assert adapter.attributes["atp_bridge.adapter.error"] == "timeout"
    assert call.status_code == ERROR and call.attributes["error.type"] == "BudgetExceeded"


def test_spans_still_queued_are_exported_when_the_worker_exits(tmp_path, serve, receiver, erp):
    # a minute between exports: only the worker_exit hook can send this request's spans in time
    bridge = serve(write_config(tmp_path, erp.url), env=otel_env(receiver, OTEL_BSP_SCHEDULE_DELAY="60000"))
    rid = bridge.post(BODY).headers["X-Request-ID"]
    code, _ = bridge.stop()
    assert code == 0
    roots = [s for s in receiver.spans if s.name == "POST /availabilities"]
    assert [s.attributes["atp_bridge.request_id"] for s in roots] == [rid]


@pytest.mark.parametrize("env", [
    {},  # no OTEL_* at all
    {"OTEL_SDK_DISABLED": "true"},
    {"OTEL_TRACES_EXPORTER": "none"},
], ids=["unset", "sdk-disabled", "exporter-none"])
def test_without_tracing_nothing_is_exported(tmp_path, serve, receiver, erp, env):
    if env:  # an endpoint too: the switch, not a missing endpoint, keeps it off
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **env}
    bridge = serve(write_config(tmp_path, erp.url), env=env)
    for _ in range(3):
        assert bridge.post(BODY).status_code == 200
    assert "traceparent" not in erp.requests("/atp")[0].headers
    code, err = bridge.stop()
    assert code == 0 and "atp_bridge.tracing" not in err  # not even a warning: off is the default
    assert receiver.posts == 0


# a worker's imports, in a child: the app built and a webhook answered exactly as a
# gunicorn worker does (gevent patched, post_worker_init run), then its sys.modules
WORKER = """
import json, sys
from gevent import monkey; monkey.patch_all()
from atp_bridge import gunicorn_conf
from atp_bridge.app import create_app
app = create_app(sys.argv[1])
gunicorn_conf.post_worker_init(None)
r = app.test_client().post("/availabilities", json=json.loads(sys.argv[2]))
assert r.status_code == 200, r.data
gunicorn_conf.worker_exit(None, None)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")))
"""


def worker_modules(config, env: dict) -> list[str]:
    result = subprocess.run([sys.executable, "-c", WORKER, str(config), json.dumps(BODY)], cwd=ROOT,
                            env=subprocess_env(**env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_with_tracing_off_a_worker_never_imports_opentelemetry(tmp_path, receiver, erp):
    config = write_config(tmp_path, erp.url)
    assert worker_modules(config, {}) == []
    assert worker_modules(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                                   "OTEL_SDK_DISABLED": "true"}) == []
    # the same probe sees it when tracing is on: the check can fail
    assert "opentelemetry.sdk.trace" in worker_modules(config, otel_env(receiver))


@pytest.mark.parametrize("variable, value, says", [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318/user:pw-secret-9", "is not an http:// or https:// URL"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://pw-secret-9@:99999/v1/traces", "is not a valid URL"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTLP/HTTP with protobuf only"),
], ids=["no-scheme", "bad-port", "grpc"])
def test_a_bad_otel_setting_keeps_serving_and_says_so_once(tmp_path, serve, receiver, erp, variable, value, says):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, variable: value}
    bridge = serve(write_config(tmp_path, erp.url), env=env)
    for _ in range(3):
        r = bridge.post(BODY)
        assert r.status_code == 200 and "X-ATP-Degraded" not in r.headers
    code, err = bridge.stop()
    assert code == 0
    warnings = [json.loads(line) for line in err.splitlines() if "atp_bridge.tracing" in line]
    assert [(w["level"], w["logger"]) for w in warnings] == [("WARNING", "atp_bridge.tracing")]
    assert warnings[0]["msg"].startswith(f"tracing off: {variable}") and says in warnings[0]["msg"]
    assert "pw-secret-9" not in err
    assert receiver.posts == 0


def test_a_collector_that_is_down_does_not_slow_or_break_the_webhook(tmp_path, serve, erp):
    from tests.serve import free_port

    bridge = serve(write_config(tmp_path, erp.url),
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                        "OTEL_BSP_SCHEDULE_DELAY": "50"})  # the exporter retries for 10 s
    for _ in range(5):
        r = bridge.post(BODY, timeout=5)
        assert r.status_code == 200 and "X-ATP-Degraded" not in r.headers
        assert [a["atp"] for a in r.json()["availabilities"]] == [5, 0, 0, 0, 0, 7]
    # the worker's exit gives up on the spans instead of waiting out the exporter's retries
    code, err = bridge.stop()
    assert code == 0
    assert "spans not exported within 3 s of the worker's exit were dropped" in err


def test_the_otlp_receiver_rejects_what_is_not_an_export(receiver):
    r = requests.post(receiver.endpoint + "/v1/traces", data=b"\xff\xff", timeout=5,
                      headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and receiver.spans == [] and len(receiver.bad) == 1
