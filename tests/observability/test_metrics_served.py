"""What the dashboard and alerts read is really served by ``atp-bridge serve``:
prometheus_client is not imported before ``serve`` sets
PROMETHEUS_MULTIPROC_DIR (imported earlier, it keeps values in memory and
every worker's /metrics is empty), and the gauges added for the alerts
(deadline, CSV file mtime) carry their real values."""
import os
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import write_yaml
from tests.serve import ROOT, BridgeProcess, subprocess_env

pytestmark = pytest.mark.slow


def test_importing_the_cli_does_not_import_prometheus_client():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, atp_bridge.cli; "
                               "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))"],
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_serve_with_two_workers_exports_the_deadline_and_the_served_csv_files_mtime(tmp_path):
    csv = tmp_path / "stock.csv"
    csv.write_text("product,location,atp\nsku-1,store-1,4\n")
    os.utime(csv, (1_700_000_000, 1_700_000_000))
    config = write_yaml(tmp_path / "bridge.yaml", {
        "deadline_ms": 1250, "adapters": [{"name": "stores", "type": "csv", "path": "stock.csv"}]})
    with BridgeProcess(config, workers=2) as bridge:
        bridge.wait_ready()
        body = {"products": [{"product_id": "p", "external_identifier": "sku-1"}],
                "fulfillment_locations": ["store-1"]}
        assert bridge.post(body).json()["availabilities"][0]["atp"] == 4
        webhook = ("atp_bridge_requests_total", (("route", "/availabilities"), ("status", "200")))
        for _ in range(50):  # the other worker writes its counts within a second (metrics.FLUSH_S)
            got = samples(bridge.get("/metrics").text)
            if webhook in got:
                break
            time.sleep(0.1)
    assert got[("atp_bridge_deadline_seconds", ())] == 1.25
    assert got[("atp_bridge_csv_mtime_seconds", (("adapter", "stores"),))] == 1_700_000_000
    assert got[("atp_bridge_csv_rows", (("adapter", "stores"),))] == 1
    assert got[webhook] == 1
