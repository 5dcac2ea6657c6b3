"""deploy/prometheus: promtool accepts the rules and passes their unit tests
(every alert fires under its fault and stays silent without it), every alert
carries what on-call needs, every metric a rule reads is one the bridge
exports, and the PrometheusRule manifest holds the same groups."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from prometheus_client.metrics import MetricWrapperBase

from atp_bridge import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
UNIT_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yaml"))
MANIFEST = ROOT / "deploy" / "k8s" / "prometheusrule.yaml"
RUNBOOK = "https://github.com/example/atp-bridge/blob/main/README.md#"
INSTALL_HINT = "promtool is not installed: apt-get install prometheus (Debian's package brings promtool)"

def promtool(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)


def rule_groups(path=RULES) -> list[dict]:
    return yaml.safe_load(path.read_text())["groups"]


def alerts() -> dict[str, dict]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def records() -> list[dict]:
    return [r for g in rule_groups() for r in g["rules"] if "record" in r]


def exported_names() -> set[str]:
    """Every series name the metrics defined in atp_bridge.metrics can expose."""
    names = set()
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        for family in collector.describe():
            kind = family.type
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(kind, [""])
            names |= {family.name + s for s in suffixes}
    return names


def test_promtool_check_rules_accepts_the_rules_file():
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts()) + len(records())} rules found" in done.stdout


def test_the_promtool_unit_tests_pass():
    assert [p.name for p in UNIT_TESTS] == ["alerts.test.yaml"]
    done = promtool("test", "rules", *UNIT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "FAILED" not in done.stdout


def unit_checks() -> list[dict]:
    return [c for path in UNIT_TESTS for t in yaml.safe_load(path.read_text())["tests"]
            for c in t.get("alert_rule_test", [])]


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_silent():
    fires = {c["alertname"] for c in unit_checks() if c["exp_alerts"]}
    silent = {c["alertname"] for c in unit_checks() if not c["exp_alerts"]}
    assert sorted(alerts()) == sorted(fires) == sorted(silent)
    assert len(alerts()) == 7


def test_a_broken_alert_fails_its_unit_test(tmp_path):
    """The unit tests can fail: a degraded-answers threshold of 20 % misses the 10 % fault."""
    text = RULES.read_text()
    assert text.count("job:atp_bridge_degraded:ratio_rate5m > 0.01") == 1
    (tmp_path / "rules.yaml").write_text(text.replace("ratio_rate5m > 0.01", "ratio_rate5m > 0.2"))
    (tmp_path / "tests").mkdir()
    for path in UNIT_TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)
    done = promtool("test", "rules", *sorted((tmp_path / "tests").glob("*.yaml")), cwd=tmp_path)
    assert done.returncode == 1
    report = done.stdout + done.stderr  # promtool writes the failures to stderr
    assert "alertname: AtpBridgeDegradedAnswers, time: 15m" in report
    assert re.findall(r"alertname: (\w+)", report) == ["AtpBridgeDegradedAnswers"]


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_says_what_it_is_what_to_check_first_and_where_its_runbook_is(name):
    rule = alerts()[name]
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    assert rule["annotations"]["summary"].startswith("atp-bridge")
    assert "Check first" in rule["annotations"]["description"]
    assert rule["annotations"]["runbook_url"] == RUNBOOK + name.lower()  # a README heading named after it
    assert rule["labels"]["severity"] in ("critical", "warning")


def test_recording_rules_follow_the_level_metric_operations_convention():
    bad = [r["record"] for r in records() if not re.fullmatch(r"[a-z_]+:atp_bridge_[a-z_]+:[a-z0-9_]+", r["record"])]
    assert bad == []
    # quantile records differ only by their quantile label
    names = [(r["record"], r.get("labels", {}).get("quantile")) for r in records()]
    assert len(names) == len(set(names))


def test_every_metric_a_rule_reads_is_one_the_bridge_exports():
    exported = exported_names()
    assert {"atp_bridge_requests_total", "atp_bridge_request_duration_seconds_bucket",
            "atp_bridge_deadline_seconds", "atp_bridge_csv_mtime_seconds", "atp_bridge_holds_active"} <= exported
    # a recorded series (job:atp_bridge_x:rate5m) is not a metric name: its ':' is excluded
    read = {m for r in [*alerts().values(), *records()] for m in re.findall(r"(?<![:\w])atp_bridge_\w+", r["expr"])}
    assert len(read) >= 10
    unknown = sorted(read - exported)
    assert unknown == []


def test_the_prometheusrule_manifest_holds_the_same_groups_as_rules_yaml():
    (doc,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert doc["spec"]["groups"] == rule_groups()
