"""Manual holds (``atp-bridge holds``), what ``query`` shows of the rules, and the one batch."""
import json

import pytest
from click.testing import CliRunner

from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.bridge import Bridge
from atp_bridge.holds import HoldStore
from atp_bridge.rules import Caps
from tests import fake_adapters
from tests.conftest import write_yaml

VALUES = {"S1": {"A": 9, "B": 4, "C": 2}, "S2": {"A": 1, "B": 8, "C": 5}}


@pytest.fixture
def config_dir(tmp_path, redis_db):
    write_yaml(tmp_path / "bridge.yaml", {
        "holds": {"url": redis_db.url, "refresh_s": 0.05},
        "bundles": {"KIT": {"A": 2, "B": 1}},
        "caps": {"locations": {"S2": 3}},
        "safety_stock": {"products": {"B": 1}}})
    write_yaml(tmp_path / "adapters" / "10-stock.yaml",
               {"name": "stock", "type": "static", "values": VALUES, "match_on": "product_id"})
    return tmp_path


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_holds_add_list_and_remove_with_reason_ttl_and_every_location(config_dir, redis_db):
    code, out = run("holds", "add", "--config", str(config_dir), "--product", "A", "--product", "B",
                    "--location", "S1", "--ttl", "600", "--reason", "damaged in transit")
    assert code == 0 and out == "held 2 product(s) at S1 for 600 s: A, B (reason: damaged in transit)\n"
    assert run("holds", "add", "--config", str(config_dir), "--product", "C", "--location", "*")[0] == 0
    HoldStore(redis_db.client()).record("S2", ["B"], ttl_s=60)  # a rejection hold, same set

    code, out = run("holds", "list", "--config", str(config_dir), "--json")
    rows = json.loads(out)
    assert [(h["product"], h["location"], h["kind"], h["reason"]) for h in rows] == [
        ("A", "S1", "manual", "damaged in transit"), ("B", "S1", "manual", "damaged in transit"),
        ("B", "S2", "rejection", "no_inventory rejection"), ("C", "*", "manual", "")]
    assert rows[3]["expires"] is None and 599 < rows[0]["expires"] - rows[0]["since"] < 601

    code, out = run("holds", "list", "--config", str(config_dir), "--location", "S2")
    assert code == 0 and out.splitlines()[-1] == "2 hold(s)"  # B at S2 and C everywhere
    assert "C                        *            manual     never" in out

    assert run("holds", "remove", "--config", str(config_dir), "--product", "C", "--location", "*") == (
        0, "removed 1 hold(s) at *\n")
    code, out = run("holds", "remove", "--config", str(config_dir), "--product", "C", "--location", "*")
    assert code == 0 and out.startswith("no hold on C at * (nothing removed")
    # the removed hold's reason went with it
    assert sorted(redis_db.client().hkeys("atp-bridge:holds:manual")) == [b"S1\x1fA", b"S1\x1fB"]


def test_every_worker_view_honours_a_manual_hold_and_counts_it_by_kind(config_dir, redis_db):
    from atp_bridge import metrics

    bridge = Bridge.from_config(load_config(config_dir))
    try:
        assert bridge.answer(["A", "KIT"], ["A", "KIT"], ["S1"]).atps == [9, 3]
        bridge.holds.add("*", ["A"], reason="recall")
        bridge.holds.record("S1", ["B"])
        bridge.holds.refresh()
        assert bridge.answer(["A", "KIT", "B"], ["A", "KIT", "B"], ["S1", "S2"]).atps == [0, 0, 0, 0, 0, 3]
        assert metrics.HOLDS_ACTIVE.labels("manual")._value.get() == 1
        assert metrics.HOLDS_ACTIVE.labels("rejection")._value.get() == 1
    finally:
        bridge.close()


def test_holds_without_a_holds_block_or_redis_say_what_to_fix(tmp_path):
    write_yaml(tmp_path / "bridge.yaml", {})
    write_yaml(tmp_path / "adapters" / "10-x.yaml", {"name": "x", "type": "static"})
    code, out = run("holds", "list", "--config", str(tmp_path))
    assert code == 1 and f"{tmp_path / 'bridge.yaml'} has no `holds:` block" in out
    write_yaml(tmp_path / "bridge.yaml", {"holds": {"url": "redis://127.0.0.1:1/0"}})
    code, out = run("holds", "add", "--config", str(tmp_path), "--product", "A", "--location", "S1")
    assert code == 1 and "could not add 1 hold(s) at 'S1'" in out
    assert f"Check that Redis is running and holds.url in {tmp_path / 'bridge.yaml'}." in out
    assert "Traceback" not in out


def test_query_shows_the_bundles_components_what_limits_it_and_the_holds_reason(config_dir, redis_db):
    HoldStore(redis_db.client()).add("S2", ["B"], reason="cycle count")
    code, out = run("query", "--config", str(config_dir), "--product", "KIT", "--product", "B",
                    "--location", "S1", "--location", "S2", "--json")
    assert code == 0, out
    report = json.loads(out)
    # the adapter was asked once, for B and the component A (KIT itself is never asked)
    assert report["adapters"] == {"stock": {"B@S1": 4, "B@S2": 8, "A@S1": 9, "A@S2": 1}}
    assert report["bundles"]["KIT"] == [
        {"location": "S1", "atp": 3, "limited_by": "B", "safety_stock": 0,
         "components": {"A": {"quantity": 2, "atp": 9}, "B": {"quantity": 1, "atp": 3}}},
        {"location": "S2", "atp": 0, "limited_by": "A", "safety_stock": 0,
         "components": {"A": {"quantity": 2, "atp": 1}, "B": {"quantity": 1, "atp": 0}}}]
    assert report["merged"] == [
        {"product": "KIT", "location": "S1", "atp": 3},
        {"product": "KIT", "location": "S2", "atp": 0, "cap": 3},
        {"product": "B", "location": "S1", "atp": 3, "safety_stock": 1},
        {"product": "B", "location": "S2", "atp": 0, "safety_stock": 1, "cap": 3,
         "hold": {"kind": "manual", "reason": "cycle count", "everywhere": False, "expires": None}}]
    code, text = run("query", "--config", str(config_dir), "--product", "KIT", "--product", "B",
                     "--location", "S1", "--location", "S2")
    assert "  @S1: A x2 (9), B x1 (3); limited by B" in text
    assert "HELD (manual: cycle count)" in text


def test_components_go_out_in_the_one_batch_once_even_when_also_asked(config_dir):
    fake_adapters.CALLS.clear()
    bridge = Bridge.from_config(load_config(config_dir))
    try:
        answer = bridge.answer(["KIT", "A", "KIT"], ["ext-KIT", "ext-A", "ext-KIT"], ["S1"])
    finally:
        bridge.close()
    assert answer.atps == [3, 9, 3]
    (name, batch), = fake_adapters.CALLS
    assert name == "stock" and list(batch.products) == ["A", "B"] and list(batch.locations) == ["S1"]


def test_a_pairs_cap_is_the_smaller_of_its_product_and_location_caps_else_the_default():
    caps = Caps(default=10, locations={"S1": 5, "S2": 20}, products={"A": 7})
    assert [caps.for_pair(p, loc) for p in "AB" for loc in ("S1", "S2", "S3")] == [5, 7, 7, 5, 20, 10]
    grid = [9, 30, 8, 9, 30, None]
    caps.apply(grid, ["A", "B"], ["S1", "S2", "S3"])
    assert grid == [5, 7, 7, 5, 20, None]


def test_caps_give_the_same_answers_with_and_without_unknown_values():
    caps = Caps(default=10, locations={"S1": 5, "S2": 20}, products={"A": 7, "C": 30})
    pids, locs = ["A", "B", "C"], ["S1", "S2", "S3"]
    known = [9, 30, 8, 9, 30, 11, 40, 40, 40]  # all known: the column-wise fast way
    caps.apply(known, pids, locs)
    # A: min(7, S1 5) = 5, min(7, 20) = 7, 7 (its own cap replaces the default 10)
    # B: 5, 20, the default 10; C: 5, min(30, 20) = 20, 30
    assert known == [5, 7, 7, 5, 20, 10, 5, 20, 30]
    unknown = [9, 30, 8, 9, None, 11, 40, 40, None]  # omit_unknown: unknowns stay unknown
    caps.apply(unknown, pids, locs)
    assert unknown == [5, 7, 7, 5, None, 10, 5, 20, None]
