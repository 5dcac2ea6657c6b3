"""deploy/grafana/atp-bridge.json: an importable dashboard whose every panel
queries the data source chosen in its ``datasource`` variable, with unique
ids, a grid that fits, PromQL that promtool parses, and only metrics the
bridge exports or series deploy/prometheus/rules.yaml records. That the
queries return data is shown against a real Prometheus in tests/observability."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_prometheus_rules import INSTALL_HINT, RULES, exported_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "atp-bridge.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def query_panels(doc=None) -> list[dict]:
    return [p for p in (doc or dashboard())["panels"] if p["type"] != "row"]


def panel_queries(doc=None, job=".+") -> list[tuple[str, str]]:
    """(panel title, expr) for every target, template variables substituted as Grafana would."""
    return [(p["title"], t["expr"].replace("$job", job)) for p in query_panels(doc) for t in p["targets"]]


def test_the_dashboard_is_importable_json_with_a_prometheus_datasource_variable():
    doc = dashboard()
    assert doc["uid"] == "atp-bridge" and doc["id"] is None and doc["title"] == "atp-bridge"
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert variables["job"]["datasource"] == DATASOURCE
    assert variables["job"]["query"]["query"] == "label_values(atp_bridge_deadline_seconds, job)"
    assert "__inputs" not in doc  # nothing to map at import: the variable picks the data source


def test_every_panel_queries_the_datasource_variable_with_an_expression():
    problems = []
    for p in query_panels():
        if p.get("datasource") != DATASOURCE:
            problems.append(f"{p['title']}: panel datasource {p.get('datasource')}")
        if not p.get("targets"):
            problems.append(f"{p['title']}: no targets")
        for t in p.get("targets", []):
            if t.get("datasource") != DATASOURCE or not t.get("expr", "").strip():
                problems.append(f"{p['title']}: target {t.get('refId')} {t.get('datasource')} {t.get('expr')!r}")
            if 'job=~"$job"' not in t.get("expr", ""):
                problems.append(f"{p['title']}: target {t.get('refId')} ignores the job variable")
        if len({t["refId"] for t in p.get("targets", [])}) != len(p.get("targets", [])):
            problems.append(f"{p['title']}: duplicate refId")
    assert problems == []
    assert len(query_panels()) == 15


def test_panel_ids_are_unique_and_the_grid_has_no_overlaps():
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_the_panels_cover_what_on_call_needs():
    titles = " | ".join(p["title"] for p in query_panels()).lower()
    for topic in ("requests per second", "latency p50 / p99 against deadline_ms", "degraded answers",
                  "pairs per webhook request", "adapter latency", "adapter errors", "cache hit ratio",
                  "cache lookups", "csv rows", "csv reloads", "circuit breaker", "holds in force"):
        assert topic in titles, topic
    assert all(p.get("description") for p in query_panels())


def test_every_expression_is_promql_that_promtool_parses(tmp_path):
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    rules = [{"record": f"dashboard:check:{i}", "expr": expr} for i, (_, expr) in enumerate(panel_queries())]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
    # and promtool does refuse a broken one
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "d:x", "expr": "sum by (a"}]}]}))
    assert subprocess.run([exe, "check", "rules", str(path)], capture_output=True, timeout=60).returncode == 1


def test_every_series_a_panel_reads_is_exported_or_recorded_and_every_record_is_used():
    rules = yaml.safe_load(RULES.read_text())["groups"]
    recorded = {r["record"] for g in rules for r in g["rules"] if "record" in r}
    exprs = [e for _, e in panel_queries()]
    names = {n for e in exprs for n in re.findall(r"[a-z_:]*atp_bridge_[a-z_:0-9]*", e)}
    unknown = sorted(names - recorded - exported_names())
    assert unknown == []
    rule_exprs = " ".join(r["expr"] for g in rules for r in g["rules"])
    unused = sorted(r for r in recorded if not any(r in e for e in exprs) and r not in rule_exprs)
    assert unused == []
    assert "atp_bridge_holds_active" in names  # holds in force (holds.py) have their panel
