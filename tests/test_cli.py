"""The atp-bridge command: check-config, query, and real serve processes."""
import json
import os
import subprocess
import time

import pytest
from click.testing import CliRunner

from atp_bridge.cli import main
from tests.conftest import SPEC_SAMPLE, write_yaml
from tests.serve import BridgeProcess, atp_bridge_cmd, subprocess_env

SPEC_ANSWER = [
    {"product_id": "1000061", "external_identifier": "1000061", "fulfillment_location": "US01", "atp": 10},
    {"product_id": "1000061", "external_identifier": "1000061", "fulfillment_location": "US02", "atp": 0},
    {"product_id": "1000061", "external_identifier": "1000061", "fulfillment_location": "DC01", "atp": 25},
    {"product_id": "10000211", "external_identifier": "10000211", "fulfillment_location": "US01", "atp": 10},
    {"product_id": "10000211", "external_identifier": "10000211", "fulfillment_location": "US02", "atp": 0},
    {"product_id": "10000211", "external_identifier": "10000211", "fulfillment_location": "DC01", "atp": 3},
]


@pytest.fixture
def csv_config(tmp_path):
    (tmp_path / "stock.csv").write_text("sku;store;qty\nA;S1;5\nA;S2;-1\nB;S1;2.7\n")
    write_yaml(tmp_path / "bridge.yaml", {"safety_stock": {"default": 1}})
    write_yaml(tmp_path / "adapters" / "10-stores.yaml", {
        "name": "stores", "type": "csv", "path": "stock.csv", "delimiter": ";",
        "columns": {"product": "sku", "location": "store", "atp": "qty"}})
    return tmp_path


def test_check_config_lists_the_adapters_of_a_valid_config(csv_config):
    result = CliRunner().invoke(main, ["check-config", "--config", str(csv_config)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(f"OK {csv_config / 'bridge.yaml'}: 1 adapter(s), NO API KEYS")
    assert "1. stores (type=csv, locations=*, match_on=external_identifier)" in result.output


def test_check_config_exits_1_with_every_problem_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("NS_KEY", "super-secret-key-value-123")
    write_yaml(tmp_path / "bridge.yaml", {"auth": {"api_keys": ["${NS_KEY}"]}, "merge": "avg"})
    write_yaml(tmp_path / "adapters" / "10-x.yaml", {"name": "x", "type": "csv"})
    result = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path / 'bridge.yaml'}: merge: Must be one of: first, sum, min, max." in result.output
    assert f"{tmp_path / 'adapters' / '10-x.yaml'}: path: Missing data for required field." in result.output
    assert "(2 problems)" in result.output
    assert "super-secret" not in result.output and "Traceback" not in result.output


def test_query_prints_each_adapters_answer_and_the_merge(csv_config):
    result = CliRunner().invoke(main, ["query", "--config", str(csv_config), "--json",
                                       "--product", "A", "--product", "B", "--location", "S1", "--location", "S9"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["adapters"] == {"stores": {"A@S1": 5, "A@S9": None, "B@S1": 2.7, "B@S9": None}}
    # each pair's safety stock is shown where it is not 0 (here the default, 1)
    assert out["merged"] == [{"product": "A", "location": "S1", "atp": 4, "safety_stock": 1},
                             {"product": "A", "location": "S9", "atp": None, "safety_stock": 1},
                             {"product": "B", "location": "S1", "atp": 1, "safety_stock": 1},
                             {"product": "B", "location": "S9", "atp": None, "safety_stock": 1}]
    assert out["degraded"] == []


def test_query_in_table_form_says_unknown(csv_config):
    result = CliRunner().invoke(main, ["query", "--config", str(csv_config), "--product", "A", "--location", "S9"])
    assert result.exit_code == 0
    assert "adapter stores:" in result.output and "unknown (0)" in result.output


def test_serve_with_no_config_answers_the_spec_sample_from_the_embedded_csv():
    with BridgeProcess() as bridge:
        bridge.wait_ready()
        resp = bridge.post(SPEC_SAMPLE, path="/newstore_api/v0/availabilities")
        assert resp.status_code == 200
        assert resp.json() == {"availabilities": SPEC_ANSWER}
        assert bridge.post(SPEC_SAMPLE).json() == {"availabilities": SPEC_ANSWER}


def test_a_served_csv_reloads_when_the_file_changes(tmp_path):
    stock = tmp_path / "stock.csv"
    stock.write_text("product,location,atp\nA,S1,5\n")
    config = write_yaml(tmp_path / "bridge.yaml", {"adapters": [
        {"name": "stores", "type": "csv", "path": "stock.csv", "reload_interval_s": 0.1}]})
    body = {"products": [{"product_id": "A", "external_identifier": "A"}], "fulfillment_locations": ["S1"]}
    with BridgeProcess(config) as bridge:
        bridge.wait_ready(path="/readyz")
        assert bridge.post(body).json()["availabilities"][0]["atp"] == 5
        tmp = tmp_path / "stock.csv.tmp"
        tmp.write_text("product,location,atp\nA,S1,42\n")
        os.replace(tmp, stock)
        deadline = time.monotonic() + 10
        while bridge.post(body).json()["availabilities"][0]["atp"] != 42 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bridge.post(body).json()["availabilities"][0]["atp"] == 42
        # a half-written file is never served: the old table stays, readiness drops
        stock.write_text("product,location,atp\nA,S1,42\nA,S2")
        deadline = time.monotonic() + 10
        import requests
        while requests.get(bridge.url + "/readyz", timeout=30).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = requests.get(bridge.url + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["adapters"]["stores"]["ok"] is False
        assert bridge.post(body).json()["availabilities"][0]["atp"] == 42


def test_serve_with_a_broken_config_exits_1_with_the_problems_and_no_traceback(tmp_path, test_adapter_entry_points):
    path = write_yaml(tmp_path / "broken.yaml", {"merge": "avg", "adapters": [{"name": "x", "type": "nope"}]})
    env = subprocess_env(test_adapter_entry_points)
    served = subprocess.run(atp_bridge_cmd("serve", "--config", str(path), "--bind", "127.0.0.1:0"),
                            env=env, capture_output=True, text=True, timeout=30)
    checked = subprocess.run(atp_bridge_cmd("check-config", "--config", str(path)),
                             env=env, capture_output=True, text=True, timeout=30)
    assert served.returncode == 1 and checked.returncode == 1
    assert "Traceback" not in served.stderr
    assert f"{path}: merge: Must be one of: first, sum, min, max." in served.stderr
    assert "unknown adapter type 'nope'" in served.stderr
    assert served.stderr == checked.stderr  # the same message as check-config
    assert served.stdout == ""


def test_serve_exits_3_without_a_traceback_when_the_workers_cannot_build_an_adapter(tmp_path,
                                                                                   test_adapter_entry_points):
    path = write_yaml(tmp_path / "c.yaml", {"adapters": [{"name": "erp", "type": "failing", "mode": "boot"}]})
    served = subprocess.run(atp_bridge_cmd("serve", "--config", str(path), "--bind", "127.0.0.1:0",
                                           "--workers", "2"),
                            env=subprocess_env(test_adapter_entry_points), capture_output=True, text=True,
                            timeout=60)
    lines = [json.loads(line) for line in served.stderr.splitlines() if line.startswith("{")]
    bare = {line for line in served.stderr.splitlines() if not line.startswith("{")}
    assert served.returncode == 3  # gunicorn's WORKER_BOOT_ERROR
    assert bare == {"cannot start on purpose"}  # gunicorn echoes the error itself; no traceback
    assert any("cannot start on purpose" in line.get("exc", "") for line in lines)  # the log has it
    assert any(line["msg"] in ("Reason: Worker failed to boot.", "gunicorn stopped: Worker failed to boot.")
               for line in lines)  # gunicorn's own line, or ours when gunicorn's halt is cut short


@pytest.mark.parametrize("name, value, expected", [
    ("ATP_BRIDGE_WORKER_CONNECTIONS", "eight", "a whole number >= 1"),
    ("WEB_CONCURRENCY", "0", "a whole number >= 1"),
    ("ATP_BRIDGE_TIMEOUT", "-5", "a whole number >= 0"),
    ("ATP_BRIDGE_LOG_FLUSH_MS", "soon", "milliseconds, a number >= 0"),
])
def test_serve_with_a_malformed_setting_in_the_environment_names_it_and_exits_1(name, value, expected):
    served = subprocess.run(atp_bridge_cmd("serve", "--bind", "127.0.0.1:0"),
                            env=subprocess_env(**{name: value}), capture_output=True, text=True, timeout=30)
    assert served.returncode == 1 and "Traceback" not in served.stderr
    assert served.stderr == f"Error: {name}={value!r}: expected {expected}; fix the environment variable\n"


def test_query_asks_each_adapter_once_and_shows_a_failure(config_file):
    from tests import fake_adapters
    path = config_file({"adapters": [
        {"name": "stores", "type": "static", "values": {"S1": {"A": 4}}},
        {"name": "erp", "type": "failing"}]})
    result = CliRunner().invoke(main, ["query", "--config", str(path), "--json",
                                       "--product", "A", "--location", "S1"])
    assert result.exit_code == 2, result.output  # degraded, as in table form
    out = json.loads(result.output)
    assert out["adapters"] == {"stores": {"A@S1": 4},
                               "erp": {"error": "adapter 'erp': ConnectionError: ERP said no"}}
    assert out["degraded"] == ["error:erp"]
    assert out["merged"] == [{"product": "A", "location": "S1", "atp": 0}]
    assert sorted(name for name, _ in fake_adapters.CALLS) == ["erp", "stores"]
