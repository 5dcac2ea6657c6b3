"""The ATP rules' configuration: every mistake is a check-config problem with file and key."""
import pytest
from click.testing import CliRunner

from atp_bridge.cli import main
from atp_bridge.config import load_config
from atp_bridge.errors import ConfigError
from tests.conftest import write_yaml


def problems(tmp_path, bridge: dict, files: dict | None = None) -> list[str]:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    write_yaml(tmp_path / "bridge.yaml", bridge)
    write_yaml(tmp_path / "adapters" / "10-x.yaml", {"name": "x", "type": "static"})
    try:
        load_config(tmp_path)
    except ConfigError as e:
        return [p.replace(str(tmp_path) + "/", "") for p in e.problems]
    return []


def test_a_valid_config_of_every_rule_loads_with_its_files(tmp_path):
    assert problems(tmp_path, {
        "safety_stock": {"default": 1, "products": {"A": 2}, "file": "ss.csv"},
        "bundles": {"KIT": {"A": 2}, "file": "b.csv"},
        "caps": {"default": 5, "locations": {"S1": 0}, "products": {"A": 3}}},
        {"ss.csv": "product,location,units\nA,S1,1\n*,S2,2\n", "b.csv": "bundle,component,quantity\nBOX,KIT,2\n"}) == []
    config = load_config(tmp_path)
    assert config.rule_files == {"safety": {"locations": {"S2": 2.0}, "products": {}, "pairs": {"A": {"S1": 1.0}}},
                                 "bundles": {"BOX": {"KIT": 2}}}
    assert config.caps.products == {"A": 3} and config.safety_stock.path == str(tmp_path / "ss.csv")


@pytest.mark.parametrize("bridge, expected", [
    ({"safety_stock": {"products": {"A": -1}}}, "bridge.yaml: safety_stock.products.A.value: must not be negative"),
    ({"safety_stock": {"locations": {"S1": -2}}}, "bridge.yaml: safety_stock.locations.S1.value: must not be negative"),
    ({"safety_stock": {"products": {12345: 1}}},
     "bridge.yaml: safety_stock.products.12345.key: the id 12345 is a number in YAML: quote it (\"12345\") "
     "so it is read as the id NewStore sends"),
    ({"caps": {"default": -1}}, "bridge.yaml: caps.default: a cap must not be negative"),
    ({"caps": {"products": {"A": -3}}}, "bridge.yaml: caps.products.A.value: a cap must not be negative"),
    ({"caps": {"locations": {"S1": 2.5}}}, "bridge.yaml: caps.locations.S1.value: Not a valid integer."),
    ({"caps": {"per_product": 1}}, "bridge.yaml: caps.per_product: unknown key (check the spelling; "
                                   "see the README's configuration reference)"),
    ({"bundles": {"KIT": {"A": 0}}}, "bridge.yaml: bundles.KIT.A: quantity must be a whole number of at least 1"),
    ({"bundles": {"KIT": {"A": -2}}}, "bridge.yaml: bundles.KIT.A: quantity must be a whole number of at least 1"),
    ({"bundles": {"KIT": {}}}, "bridge.yaml: bundles.KIT: a bundle is a mapping of component: quantity, "
                               "with at least one component"),
    ({"bundles": {"KIT": {"KIT": 1, "A": 1}}}, "bridge.yaml: bundles.KIT.KIT: a bundle cannot list itself as a component"),
    ({"bundles": {"K1": {"K2": 1}, "K2": {"K3": 1}, "K3": {"K1": 2}}},
     "bridge.yaml: bundles.K1: bundles form a cycle: K1 -> K2 -> K3 -> K1"),
])
def test_a_wrong_rule_is_named_by_file_and_key(tmp_path, bridge, expected):
    assert problems(tmp_path, bridge) == [expected]


@pytest.mark.parametrize("text, expected", [
    ("product,location,units\nA,S1,-1\n", "ss.csv: 1 bad row(s): line 2: units '-1': must not be negative"),
    ("product,location,units\nA,S1,x\nB,,2\n",
     "ss.csv: 2 bad row(s): line 2: units 'x': could not convert string to float: 'x'; "
     "line 3: product and location must not be empty (use * for any)"),
    ("sku,store,qty\nA,S1,1\n", "ss.csv: line 1: the header must name the columns product,location,units "
                                "(missing: product, location, units)"),
    ("", "ss.csv: empty file: expected a header row (product,location,units)"),
    ("product,location,units\nA,S1\n", "ss.csv: line 2: expected 3 columns, got 2"),
])
def test_a_bad_safety_stock_file_is_a_problem_at_its_key_with_the_line(tmp_path, text, expected):
    found = problems(tmp_path, {"safety_stock": {"file": "ss.csv"}}, {"ss.csv": text})
    assert found == [f"bridge.yaml: safety_stock.file: {expected}"]


def test_a_missing_rule_file_is_a_problem_not_a_silent_zero_safety_stock(tmp_path):
    assert problems(tmp_path, {"safety_stock": {"file": "nope.csv"}}) == [
        "bridge.yaml: safety_stock.file: nope.csv: cannot read: No such file or directory"]


def test_a_cycle_through_the_bundles_file_and_the_inline_bundles_is_found(tmp_path):
    found = problems(tmp_path, {"bundles": {"K1": {"K2": 1}, "file": "b.csv"}},
                     {"b.csv": "bundle,component,quantity\nK2,A,1\nK2,K1,1\nK3,B,1.5\n"})
    assert found == ["bridge.yaml: bundles.file: b.csv: 1 bad row(s): "
                     f"line 4: quantity '1.5': must be a whole number"]
    (tmp_path / "b.csv").write_text("bundle,component,quantity\nK2,A,1\nK2,K1,1\n")
    assert problems(tmp_path, {"bundles": {"K1": {"K2": 1}, "file": "b.csv"}}) == [
        "bridge.yaml: bundles.K1: bundles form a cycle: K1 -> K2 -> K1"]


def test_check_config_prints_the_rule_problems_and_exits_1(tmp_path):
    write_yaml(tmp_path / "bridge.yaml", {"caps": {"default": -5}, "bundles": {"KIT": {"KIT": 1}}})
    write_yaml(tmp_path / "adapters" / "10-x.yaml", {"name": "x", "type": "static"})
    result = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path}/bridge.yaml: caps.default: a cap must not be negative" in result.output
    assert f"{tmp_path}/bridge.yaml: bundles.KIT.KIT: a bundle cannot list itself" in result.output
    assert "(2 problems)" in result.output


def test_check_config_summarises_the_rules_it_loaded(tmp_path):
    problems(tmp_path, {"safety_stock": {"default": 1, "products": {"A": 2}, "file": "ss.csv"},
                        "bundles": {"KIT": {"A": 2}, "BOX": {"KIT": 1}}, "caps": {"default": 5}},
             {"ss.csv": "product,location,units\nA,S1,1\n*,S2,2\nB,S1,0\n"})
    result = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == (
        "  rules: safety stock (default 1, 1 location, 1 product, 2 pair rules), 2 bundle(s), caps")


def test_a_changed_bundles_file_is_swapped_in_and_a_cycle_in_it_is_refused(tmp_path):
    from atp_bridge.rules import Rules

    problems(tmp_path, {"bundles": {"KIT": {"A": 2}, "file": "b.csv", "reload_interval_s": 0}},
             {"b.csv": "bundle,component,quantity\nBOX,KIT,2\n"})
    rules = Rules(load_config(tmp_path))
    (watcher,) = rules.watchers
    assert rules.bundles.recipes == {"KIT": {"A": 2}, "BOX": {"KIT": 2}}

    (tmp_path / "b.csv").write_text("bundle,component,quantity\nBOX,KIT,3\nKIT,B,1\n")
    assert watcher.check() is True  # the file's KIT replaces the inline one
    assert rules.bundles.recipes == {"KIT": {"B": 1}, "BOX": {"KIT": 3}}
    assert rules.bundles.leaves["BOX"] == ("B",)

    (tmp_path / "b.csv").write_text("bundle,component,quantity\nBOX,KIT,1\nKIT,BOX,1\n")
    assert watcher.check() is False  # a cycle: the bundles last read stay
    assert "bundles form a cycle: BOX -> KIT -> BOX" in watcher.error
    assert rules.bundles.recipes == {"KIT": {"B": 1}, "BOX": {"KIT": 3}}
