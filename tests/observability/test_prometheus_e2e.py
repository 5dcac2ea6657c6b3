"""The dashboard and the alerts against the real thing: a real Prometheus
(scrape and rule evaluation every second) scrapes a real ``atp-bridge serve
--workers 2`` under load from this test. The bridge has a CSV, an ERP that
fails (500s, then its circuit opens), a healthy ERP behind a Redis cache on
the session's redis-server, and another behind a cache whose Redis is down
(bypassed), and zero-ATP holds on but none recorded. Every dashboard panel's expression must return data through
/api/v1/query, and AtpBridgeDegradedAnswers must reach ``firing`` in
/api/v1/alerts. The rules are deploy/prometheus/rules.yaml with every
``for:`` cut to 2 s (a copy); nothing else changes."""
import threading
import time

import pytest
import requests
import yaml

from tests.conftest import write_yaml
from tests.deploy.test_grafana import dashboard, panel_queries
from tests.deploy.test_prometheus_rules import RULES
from tests.erp_server import FakeErp
from tests.observability.prometheus_server import INSTALL_HINT, PrometheusServer, require
from tests.serve import BridgeProcess, free_port

pytestmark = pytest.mark.slow

JOB = "atp-bridge"
DEADLINE_MS = 500
WAIT_S = 40  # the whole test stays under a minute; it usually needs 10-15 s
HEALTHY = {"products": [{"product_id": "p1", "external_identifier": "sku-1"}],
           "fulfillment_locations": ["store-1", "wh-1", "wx-1"]}
DEGRADED = {"products": [{"product_id": "p1", "external_identifier": "sku-1"}],
            "fulfillment_locations": ["store-1", "dc-1"]}


def rules_with_short_for(tmp_path):
    """rules.yaml with every alert's ``for`` at 2 s, so pending turns firing within the test."""
    doc = yaml.safe_load(RULES.read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert sum("for" in r for r in alerts) == 6  # AtpBridgeCsvReloadFailing fires at once
    for rule in alerts:
        if "for" in rule:
            rule["for"] = "2s"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def erps():
    with FakeErp() as failing, FakeErp() as healthy:
        failing.mode = "error"
        healthy.stock = {("sku-1", "wh-1"): 7, ("sku-1", "wx-1"): 3}
        yield failing, healthy


def bridge_config(tmp_path, failing, healthy, redis_port):
    (tmp_path / "stock.csv").write_text("product,location,atp\nsku-1,store-1,4\nsku-2,store-1,1\n")
    rest = {"type": "rest", "retries": 0, "timeout_ms": 400}
    return write_yaml(tmp_path / "bridge.yaml", {
        "deadline_ms": DEADLINE_MS,
        # holds on, none recorded: the gauge exists (0 per kind) only when holds are configured
        "holds": {"url": f"redis://127.0.0.1:{redis_port}/1", "refresh_s": 0.5},
        "adapters": [
            {"name": "stores", "type": "csv", "path": "stock.csv", "locations": ["store-*"]},
            {"name": "erp", **rest, "url": f"{failing.url}/atp", "locations": ["dc-*"],
             "circuit": {"failure_threshold": 3, "reset_s": 1}},
            {"name": "wh", **rest, "url": f"{healthy.url}/atp"},
            {"name": "wh-cache", "type": "redis", "mode": "cache", "upstream": "wh", "locations": ["wh-*"],
             "url": f"redis://127.0.0.1:{redis_port}/0", "ttl_s": 60},
            {"name": "wx", **rest, "url": f"{healthy.url}/atp"},
            # nothing listens there: every lookup bypasses Redis to the upstream
            {"name": "wx-cache", "type": "redis", "mode": "cache", "upstream": "wx", "locations": ["wx-*"],
             "url": f"redis://127.0.0.1:{free_port()}/0", "timeout_ms": 100, "on_redis_error": "bypass"},
        ]})


def send_load(bridge, stop: threading.Event, answers: dict):
    """Alternate healthy and degraded webhook requests until ``stop``; count what came back."""
    session = requests.Session()
    while not stop.is_set():
        for body in (HEALTHY, DEGRADED):
            r = session.post(bridge.url + "/availabilities", json=body, timeout=10)
            key = (r.status_code, r.headers.get("X-ATP-Degraded") or "-")
            answers[key] = answers.get(key, 0) + 1
        time.sleep(0.02)


def test_every_panel_returns_data_and_the_degraded_alert_fires_against_a_real_prometheus(
        tmp_path, erps, redis_db):
    try:
        require("prometheus")
    except RuntimeError:
        pytest.fail(INSTALL_HINT, pytrace=False)
    failing, healthy = erps
    config = bridge_config(tmp_path, failing, healthy, redis_db.port)
    queries = panel_queries(dashboard(), job=JOB)
    assert len(queries) >= 15
    stop, answers = threading.Event(), {}
    with BridgeProcess(config, workers=2, output=tmp_path / "bridge.log") as bridge:
        bridge.wait_ready()
        load = threading.Thread(target=send_load, args=(bridge, stop, answers), daemon=True)
        load.start()
        with PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{bridge.port}"],
                              [rules_with_short_for(tmp_path)], job=JOB) as prom:
            try:
                empty, firing = wait_for_data_and_alert(prom, queries)
                values = {name: prom.query(expr) for name, expr in CHECKS.items()}
                targets = prom.targets()
                nothing = prom.query(f'atp_bridge_no_such_metric{{job="{JOB}"}}')  # emptiness is detectable
            finally:
                stop.set()
                load.join(15)
    assert nothing == []
    assert empty == [], f"panels without data after {WAIT_S}s: {empty}; answers {answers}; targets {targets}"
    assert "AtpBridgeDegradedAnswers" in firing, (firing, answers)
    alert = firing["AtpBridgeDegradedAnswers"]
    assert alert["labels"] == {"alertname": "AtpBridgeDegradedAnswers", "job": JOB, "severity": "critical"}
    assert alert["annotations"]["runbook_url"].endswith("#atpbridgedegradedanswers")
    assert "AtpBridgeRedisBypassing" in firing  # wx-cache's Redis is not there
    assert not {"AtpBridgeNoReadyReplica", "AtpBridgeCsvStale", "AtpBridgeCsvReloadFailing"} & set(firing)
    # what the panels show is what happened
    assert {k for k in answers} >= {(200, "-")} and any(k[1].endswith(":erp") for k in answers), answers
    assert sample(values["deadline"]) == {(): DEADLINE_MS / 1000}
    assert sample(values["rows"], "adapter") == {("stores",): 2}
    assert {r for (r,) in sample(values["reasons"], "reason")} <= {"error:erp", "unavailable:erp"}
    assert {result for _, result in sample(values["cache"], "adapter", "result")} >= {"hit", "miss", "bypass"}
    assert sample(values["cache"], "adapter", "result").keys() >= {("wh-cache", "hit"), ("wx-cache", "bypass")}
    assert sample(values["replicas"]) == {(): 1}
    assert 0 < sample(values["degraded_share"])[()] < 1


CHECKS = {
    "deadline": f'max(atp_bridge_deadline_seconds{{job="{JOB}"}})',
    "rows": f'max by (adapter) (atp_bridge_csv_rows{{job="{JOB}"}})',
    "reasons": f'sum by (reason) (atp_bridge_degraded_total{{job="{JOB}"}})',
    "cache": f'sum by (adapter, result) (atp_bridge_cache_total{{job="{JOB}"}})',
    "replicas": f'count(atp_bridge_deadline_seconds{{job="{JOB}"}})',
    "degraded_share": f'max(job:atp_bridge_degraded:ratio_rate5m{{job="{JOB}"}})',
}


def sample(result: list[dict], *labels: str) -> dict:
    """{(label values...): value} of an instant vector."""
    return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1]) for r in result}


def wait_for_data_and_alert(prom, queries) -> tuple[list[str], dict]:
    """Poll until every query has data and the degraded alert fires (or WAIT_S passes):
    (panel titles still without data, {alertname: alert} of the firing alerts)."""
    end = time.monotonic() + WAIT_S
    while True:
        empty = [f"{title}: {expr}" for title, expr in queries if not prom.query(expr)]
        firing = {a["labels"]["alertname"]: a for a in prom.alerts() if a["state"] == "firing"}
        if (not empty and "AtpBridgeDegradedAnswers" in firing) or time.monotonic() > end:
            return empty, firing
        time.sleep(0.5)
