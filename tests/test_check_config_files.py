"""A data file that does not exist yet: a warning from check-config (exit 0,
1 with --strict) and a JSON warning from serve, which starts anyway."""
import json
import os
import textwrap
import time

import pytest
from click.testing import CliRunner
from marshmallow import Schema, fields

from atp_bridge import adapters
from atp_bridge.adapters.base import Adapter
from atp_bridge.cli import main
from tests.conftest import write_yaml
from tests.serve import BridgeProcess

SUMMARY_1 = ("1 warning (exit 0: serve starts anyway and a data file may arrive after start; "
             "--strict makes this an error)")
BODY = {"products": [{"product_id": "A", "external_identifier": "A"}], "fulfillment_locations": ["S1"]}


@pytest.fixture
def later_config(tmp_path):
    """A config directory whose CSV is not there (yet)."""
    write_yaml(tmp_path / "adapters" / "10-stores.yaml", {
        "name": "stores", "type": "csv", "path": "drop/stock.csv", "reload_interval_s": 0.1})
    return tmp_path


def missing_line(config, adapter="stores"):
    return (f"WARNING {config / 'adapters' / '10-stores.yaml'}: path: no such file "
            f"{config / 'drop' / 'stock.csv'} (yet): adapter {adapter!r} has no data until it appears")


def check(*args):
    return CliRunner().invoke(main, ["check-config", *map(str, args)])


def test_check_config_warns_of_a_missing_csv_with_file_and_key_and_exits_0(later_config):
    result = check("--config", later_config)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith(f"OK {later_config / 'bridge.yaml'}: 1 adapter(s)")
    assert result.stderr.splitlines() == [missing_line(later_config), SUMMARY_1]


def test_check_config_strict_makes_the_missing_csv_an_error(later_config):
    result = check("--config", later_config, "--strict")
    assert result.exit_code == 1
    assert result.stdout == ""  # no "OK"
    assert result.stderr.splitlines() == [missing_line(later_config),
                                          "Error: 1 warning (exit 1: --strict makes warnings errors)"]


def test_check_config_is_silent_and_strict_passes_once_the_csv_is_there(later_config):
    (later_config / "drop").mkdir()
    (later_config / "drop" / "stock.csv").write_text("product,location,atp\nA,S1,5\n")
    for args in ([], ["--strict"]):
        result = check("--config", later_config, *args)
        assert result.exit_code == 0, result.output
        assert result.stderr == ""


def test_every_missing_file_is_listed_with_its_key_in_a_single_file_config(config_file, tmp_path):
    path = config_file({"adapters": [{"name": "a", "type": "csv", "path": "a.csv"},
                                     {"name": "b", "type": "csv", "path": str(tmp_path / "b.csv")}]})
    result = check("--config", path)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"WARNING {path}: adapters[0].path: no such file {tmp_path / 'a.csv'} (yet): adapter 'a' has no "
        f"data until it appears",
        f"WARNING {path}: adapters[1].path: no such file {tmp_path / 'b.csv'} (yet): adapter 'b' has no "
        f"data until it appears",
        "2 warnings (exit 0: serve starts anyway and a data file may arrive after start; "
        "--strict makes these errors)"]


def test_a_data_path_from_the_environment_is_masked_in_the_warning(config_file, monkeypatch):
    monkeypatch.setenv("DROP_DIR", "/srv/secret-drop-dir")
    path = config_file({"adapters": [{"name": "a", "type": "csv", "path": "${DROP_DIR}/stock.csv"}]})
    result = check("--config", path)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (f"WARNING {path}: adapters[0].path: no such file ***/stock.csv "
                                             f"(yet): adapter 'a' has no data until it appears")
    assert "secret-drop-dir" not in result.output


# -- a third-party adapter uses the same mechanism ---------------------------

class DropSchema(Schema):
    feed = fields.String(required=True)
    stale_after_s = fields.Integer(load_default=60)


class DropAdapter(Adapter):
    """A plug-in with a polled data file and a warning of its own."""

    options_schema = DropSchema
    data_file_options = ("feed",)

    @classmethod
    def warnings(cls, spec):
        found = super().warnings(spec)
        if spec.options["stale_after_s"] > 3600:
            found.append(("stale_after_s", "over an hour: a stopped feed goes unnoticed that long"))
        return found

    def lookup(self, batch):
        return []


@pytest.fixture
def drop_entry_point(tmp_path_factory, monkeypatch):
    """``type: drop`` from a real entry point, as a third-party package ships it."""
    site = tmp_path_factory.mktemp("drop-site")
    dist = site / "atp_bridge_drop-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: atp-bridge-drop\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [atp_bridge.adapters]
        drop = tests.test_check_config_files:DropAdapter
        """))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(adapters, "_plugins", None)
    yield
    monkeypatch.setattr(adapters, "_plugins", None)


def test_a_third_party_adapters_warnings_are_printed_with_file_and_key(drop_entry_point, config_file, tmp_path):
    path = config_file({"adapters": [{"name": "feed", "type": "drop", "feed": "feed.json",
                                      "stale_after_s": 7200}]})
    result = check("--config", path)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[:2] == [
        f"WARNING {path}: adapters[0].feed: no such file {tmp_path / 'feed.json'} (yet): adapter 'feed' has "
        f"no data until it appears",
        f"WARNING {path}: adapters[0].stale_after_s: over an hour: a stopped feed goes unnoticed that long"]
    assert check("--config", path, "--strict").exit_code == 1


# -- serve: the same warning, and it starts ----------------------------------

@pytest.mark.slow
def test_serve_logs_the_missing_csv_as_a_json_warning_starts_and_serves_once_it_arrives(later_config, tmp_path):
    log = tmp_path / "serve.log"
    with BridgeProcess(later_config, output=log) as bridge:
        bridge.wait_ready()  # /healthz: the process serves
        ready = bridge.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["adapters"]["stores"]["ok"] is False
        stock = later_config / "drop" / "stock.csv"
        stock.parent.mkdir()
        stock.with_suffix(".tmp").write_text("product,location,atp\nA,S1,7\n")
        os.replace(stock.with_suffix(".tmp"), stock)
        deadline = time.monotonic() + 15
        while bridge.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bridge.get("/readyz").status_code == 200
        assert bridge.post(BODY).json()["availabilities"][0]["atp"] == 7
        code, _ = bridge.stop()
    assert code == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    warned = [line for line in lines if line.get("key") == "path"]
    assert len(warned) == 1  # one worker
    assert warned[0]["level"] == "WARNING"
    assert warned[0]["file"] == str(later_config / "adapters" / "10-stores.yaml")
    assert warned[0]["msg"] == "config warning: " + missing_line(later_config).removeprefix("WARNING ")


def test_the_app_logs_nothing_when_the_data_file_is_there(tmp_path, caplog):
    from atp_bridge.app import create_app

    (tmp_path / "stock.csv").write_text("product,location,atp\nA,S1,5\n")
    config = write_yaml(tmp_path / "c.yaml", {"adapters": [{"name": "s", "type": "csv", "path": "stock.csv"}]})
    caplog.set_level("WARNING", logger="atp_bridge")
    create_app(str(config)).extensions["atp_bridge"].bridge.close()
    assert not [r for r in caplog.records if isinstance(r.msg, dict) and "key" in r.msg]


def test_the_app_logs_a_missing_data_file_with_file_and_key(tmp_path, caplog):
    from atp_bridge.app import create_app

    config = write_yaml(tmp_path / "c.yaml", {"adapters": [{"name": "s", "type": "csv", "path": "stock.csv"}]})
    caplog.set_level("WARNING", logger="atp_bridge")
    create_app(str(config)).extensions["atp_bridge"].bridge.close()
    found = [r.msg for r in caplog.records if isinstance(r.msg, dict) and "key" in r.msg]
    assert found == [{"msg": f"config warning: {config}: adapters[0].path: no such file {tmp_path / 'stock.csv'} "
                             f"(yet): adapter 's' has no data until it appears",
                      "file": str(config), "key": "adapters[0].path"}]
