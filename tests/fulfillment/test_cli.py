"""The click commands, driven with CliRunner against the emulator over HTTP."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests
from click.testing import CliRunner

from atp_bridge.fulfillment.cli import fulfillment, parse_bind


@pytest.fixture
def run(emulator_url):
    """Invoke ``fulfillment ARGS...`` with NEWSTORE_URL/NEWSTORE_TOKEN set."""
    def _run(*args, env=None):
        base = {"NEWSTORE_URL": emulator_url, "NEWSTORE_TOKEN": "cli-token"}
        return CliRunner().invoke(fulfillment, list(args), env={**base, **(env or {})})
    return _run


def test_accept_then_ship_prints_sentences_for_humans(run, make_request):
    uuid = make_request()["uuid"]
    accepted = run("accept", uuid)
    assert accepted.exit_code == 0
    assert accepted.stdout == f"Accepted fulfillment request {uuid} (HTTP 200).\n"
    shipped = run("ship", uuid, "product1", "--carrier", "FEDEX", "--tracking-code", "1234")
    assert shipped.stdout == f"Shipment of 1 unit(s) of {uuid} accepted (HTTP 201).\n"
    again = run("ship", uuid, "product1", "--carrier", "FEDEX", "--tracking-code", "1234")
    assert "duplicate, nothing changed (HTTP 200)" in again.stdout


def test_ship_with_json_reports_status_duplicate_and_the_package(run, make_request):
    uuid = make_request()["uuid"]
    args = ["ship", uuid, "product1", "product2", "--carrier", "FEDEX", "--tracking-code",
            "1234", "--service-level", "FEDEX_GROUND", "--json"]
    first = json.loads(run(*args).stdout)
    assert first == {"action": "ship", "uuid": uuid, "status": 201, "duplicate": False,
                     "product_ids": ["product1", "product2"],
                     "shipment": {"carrier": "FEDEX", "tracking_code": "1234",
                                  "carrier_service_level": "FEDEX_GROUND"}}
    assert json.loads(run(*args).stdout)["duplicate"] is True


def test_status_with_json_shows_every_list_and_null_for_nothing_yet(run, make_request):
    uuid = make_request()["uuid"]
    assert json.loads(run("status", uuid, "--json").stdout) == {
        "uuid": uuid, "shipment": None, "canceled_items": None, "rejected_items": None}
    run("cancel", uuid, "product1")
    run("reject", uuid, "product2", "--reason", "no_inventory")
    run("ship", uuid, "product1", "--carrier", "UPS", "--tracking-code", "1Z")
    data = json.loads(run("status", uuid, "--json").stdout)
    assert [c["product_id"] for c in data["canceled_items"]] == ["product1"]
    assert [(r["product_id"], r["rejection_reason"]) for r in data["rejected_items"]] == [
        ("product2", "no_inventory")]
    assert [(s["product_id"], s["carrier"], s["tracking_code"])
            for s in data["shipment"]["successful_shipments"]] == [("product1", "UPS", "1Z")]
    assert data["shipment"]["failed_shipments"] == []


def test_status_for_humans_lists_sections(run, make_request):
    uuid = make_request()["uuid"]
    run("ship", uuid, "product1", "--carrier", "UPS", "--tracking-code", "1Z")
    lines = run("status", uuid).stdout.splitlines()
    assert lines[0] == f"Fulfillment request {uuid}"
    assert lines[1] == "Shipped (1):"
    assert lines[2].startswith("  product1  UPS  tracking 1Z  at ")
    assert lines[3:] == ["Canceled: none yet", "Rejected: none yet"]


def test_cancel_reject_all_and_resend_report_json(run, make_request, item_states):
    uuid = make_request()["uuid"]
    cancel = json.loads(run("cancel", uuid, "product1", "--json").stdout)
    assert (cancel["action"], cancel["status"], cancel["product_ids"]) == (
        "cancel", 201, ["product1"])
    reject = json.loads(run("reject", uuid, "--all", "--reason", "cannot_fulfill",
                            "--json").stdout)
    assert (reject["status"], reject["all"], reject["product_ids"]) == (201, True, [])
    assert [s for _, _, s in item_states(uuid)] == ["rejected", "canceled", "rejected",
                                                    "rejected"]
    assert json.loads(run("resend", uuid, "--json").stdout) == {
        "action": "resend", "uuid": uuid, "status": 200}


def test_reject_needs_product_ids_or_all_but_not_both(run, make_request):
    uuid = make_request()["uuid"]
    neither = run("reject", uuid, "--reason", "no_inventory")
    assert neither.exit_code == 2
    assert "give PRODUCT_IDs or --all" in neither.output
    assert run("reject", uuid, "p1", "--all", "--reason", "no_inventory").exit_code == 2


def test_an_api_error_says_what_failed_and_how_to_fix_it(run, make_request):
    uuid = make_request()["uuid"]
    run("cancel", uuid, "product1", "product1")
    result = run("cancel", uuid, "product1")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "cancel failed: HTTP 409 item_already_canceled" in result.stderr
    assert "conflicting items: product1" in result.stderr
    assert "Fix: run `atp-bridge fulfillment status UUID`" in result.stderr


def test_an_api_error_with_json_is_a_json_document_on_stderr(run):
    result = run("accept", "no-such-request", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stderr)["error"]
    assert (error["status"], error["error_code"]) == (400, "fulfillment_request_invalid")
    assert "right tenant" in error["hint"]


def test_a_missing_url_or_token_names_the_option_and_the_variable(emulator_url):
    runner = CliRunner()
    no_url = runner.invoke(fulfillment, ["accept", "x"], env={"NEWSTORE_URL": "",
                                                              "NEWSTORE_TOKEN": "t"})
    assert no_url.exit_code == 1
    assert "accept: no API URL." in no_url.stderr and "set NEWSTORE_URL" in no_url.stderr
    no_token = runner.invoke(fulfillment, ["accept", "x", "--url", emulator_url],
                             env={"NEWSTORE_TOKEN": ""})
    assert "set NEWSTORE_TOKEN or pass --token" in no_token.stderr


def test_a_wrong_token_is_reported_with_the_fix(serve):
    from atp_bridge.fulfillment.emulator import create_emulator_app
    url = serve(create_emulator_app(token="right"))
    result = CliRunner().invoke(fulfillment, ["resend", "x", "--url", url, "--token", "wrong"])
    assert result.exit_code == 1
    assert "HTTP 401 unauthorized" in result.stderr
    assert "NEWSTORE_TOKEN" in result.stderr


def test_an_unreachable_url_is_reported_as_a_connection_problem():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(fulfillment, ["status", "x", "--url",
                                              f"http://127.0.0.1:{port}", "--token", "t"])
    assert result.exit_code == 1
    assert "status failed:" in result.stderr
    assert "Fix: check --url / NEWSTORE_URL" in result.stderr


def test_parse_bind_splits_host_and_port_and_rejects_garbage():
    assert parse_bind("127.0.0.1:8081") == ("127.0.0.1", 8081)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad in ("8081", "host:", "host:99999", ":80"):
        with pytest.raises(Exception, match="HOST:PORT"):
            parse_bind(bad)


def test_the_emulator_command_serves_the_api_on_the_bound_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "atp_bridge.fulfillment",
                             "--bind", f"127.0.0.1:{port}",
                             "--seed", "3", "--token", "tok"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                created = requests.post(f"{url}/_emulator/fulfillment_requests", json={
                    "items": [{"product_id": "p1", "price": 1}]}, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail(f"emulator did not start: {proc.stderr.read1().decode()}")
        uuid = created.json()["uuid"]
        result = CliRunner().invoke(fulfillment, ["accept", uuid, "--url", url,
                                                  "--token", "tok", "--json"])
        assert json.loads(result.stdout)["status"] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stderr.close()


def test_status_with_units_shows_each_units_price_and_item_id_from_the_emulator(
        run, make_request):
    order = make_request([("product1", 20.0), ("product1", 10.0), ("product2", 10.0)])
    uuid = order["uuid"]
    ids = {(i["product_id"], i["price"]): i["item_id"] for i in order["items"]}
    run("ship", uuid, "product1", "--carrier", "FEDEX", "--tracking-code", "1234")
    run("reject", uuid, "product2", "--reason", "no_inventory")
    result = run("status", uuid, "--units")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("Units in the emulator (3):")
    assert lines[start + 1:] == [  # the README's "the 20.00 unit": most expensive first
        f"  product1  20.00  shipped  item {ids[('product1', 20.0)]}",
        f"  product1  10.00  open  item {ids[('product1', 10.0)]}",
        f"  product2  10.00  rejected (no_inventory)  item {ids[('product2', 10.0)]}"]
    data = json.loads(run("status", uuid, "--units", "--json").stdout)
    assert [(u["item_id"], u["price"], u["status"]) for u in data["units"]] == [
        (ids[("product1", 20.0)], 20.0, "shipped"), (ids[("product1", 10.0)], 10.0, "open"),
        (ids[("product2", 10.0)], 10.0, "rejected")]
    assert "units" not in json.loads(run("status", uuid, "--json").stdout)


def test_status_units_against_a_server_without_the_emulator_endpoint_says_so(serve):
    from flask import Flask
    newstore = Flask("not-the-emulator")  # every status GET 404s, as before anything happened
    result = CliRunner().invoke(fulfillment, ["status", "fr-1", "--units", "--url", serve(newstore),
                                              "--token", "t"])
    assert result.exit_code == 1
    assert "status failed: HTTP 404" in result.stderr
    assert ("Fix: --units reads GET /_emulator/fulfillment_requests/UUID, which only the emulator "
            "has: check the uuid and that --url points at the emulator.") in result.stderr


def write_config(path, doc):
    import yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def reject_with_hold(run, make_request, item_states):
    """``reject_with_hold(config_args, env)`` -> (result, the unit's state after)."""
    def _reject(*config_args, env=None):
        uuid = make_request([("product1", 5.0)])["uuid"]
        result = run("reject", uuid, "product1", "--reason", "no_inventory",
                     "--hold-location", "DC01", *config_args, env=env)
        return result, [s for _, _, s in item_states(uuid)]
    return _reject


def test_hold_location_without_holds_names_the_file_to_edit_for_each_config_layout(
        tmp_path, reject_with_hold):
    adapter = {"name": "stock", "type": "csv", "path": "stock.csv"}
    (tmp_path / "stock.csv").write_text("product,location,atp\np1,DC01,3\n")
    single = write_config(tmp_path / "atp-bridge.yaml", {"adapters": [adapter]})
    directory = tmp_path / "conf"
    write_config(directory / "adapters" / "10-stock.yaml", {**adapter, "path": "../stock.csv"})
    outcomes = {"single": reject_with_hold("--config", str(single))}
    outcomes["dir, no bridge.yaml"] = reject_with_hold("--config", str(directory))
    write_config(directory / "bridge.yaml", {"deadline_ms": 1000})
    outcomes["dir"] = reject_with_hold("--config", str(directory))
    outcomes["embedded"] = reject_with_hold(env={"ATP_BRIDGE_CONFIG": None})
    messages = {}
    for name, (result, states) in outcomes.items():
        assert result.exit_code == 1, (name, result.output)
        assert states == ["open"], name  # refused before anything was rejected
        messages[name] = " ".join(result.stderr.split())
    block = "`holds: {url: redis://...}`"
    assert messages["single"] == (f"Error: --hold-location: {single} has no `holds:` block; "
                                  f"add {block} at the top level of {single}.")
    assert messages["dir, no bridge.yaml"] == (
        f"Error: --hold-location: {directory} has no bridge.yaml, so no `holds:` block; create "
        f"{directory / 'bridge.yaml'} with {block} (the server-wide keys of a config directory "
        f"go there).")
    assert messages["dir"] == (f"Error: --hold-location: {directory / 'bridge.yaml'} has no "
                               f"`holds:` block; add {block} to {directory / 'bridge.yaml'}.")
    assert messages["embedded"] == (
        "Error: --hold-location: the embedded sample config is in use (no --config, no "
        "$ATP_BRIDGE_CONFIG) and it has no `holds:` block; pass --config (or set "
        f"$ATP_BRIDGE_CONFIG) with your own config: a directory, with {block} in its "
        f"bridge.yaml, or one YAML file, with {block} at its top level.")


def test_a_hold_that_cannot_be_recorded_says_the_rejection_stands_without_a_traceback(tmp_path, reject_with_hold):
    from tests.adapters.conftest import closed_port

    (tmp_path / "stock.csv").write_text("product,location,atp\np1,DC01,3\n")
    config = write_config(tmp_path / "atp-bridge.yaml", {
        "holds": {"url": f"redis://127.0.0.1:{closed_port()}/0"},
        "adapters": [{"name": "stock", "type": "csv", "path": "stock.csv"}]})
    result, states = reject_with_hold("--config", str(config))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert states == ["rejected"]  # NewStore took it: the message must say so
    assert "accepted by NewStore (HTTP 201), but the zero-ATP hold of product1 at DC01 was not recorded" \
        in result.stderr
    assert "Do not run reject again: it would reject more units." in result.stderr
