"""Config loading: directory and single file, ${VAR}, every problem with file and key."""
import pytest

from atp_bridge.config import load_config
from atp_bridge.errors import ConfigError
from tests.conftest import write_yaml

STATIC = {"type": "static", "values": {}}


def problems_of(path):
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.problems


def test_a_directory_config_orders_adapters_by_file_name(tmp_path):
    write_yaml(tmp_path / "bridge.yaml", {"merge": "sum", "deadline_ms": 500})
    write_yaml(tmp_path / "adapters" / "20-erp.yaml", {"name": "erp", **STATIC})
    write_yaml(tmp_path / "adapters" / "10-stores.yaml", {"name": "stores", "locations": ["S*"], **STATIC})
    config = load_config(tmp_path)
    assert [a.name for a in config.adapters] == ["stores", "erp"]
    assert config.merge == "sum" and config.deadline_ms == 500
    assert config.adapters[0].locations == ("S*",)
    assert config.adapters[1].locations == ("*",)
    assert config.adapters[0].source.endswith("10-stores.yaml")


def test_a_single_file_config_has_defaults_for_every_server_key(config_file):
    config = load_config(config_file({"adapters": [{"name": "a", **STATIC}]}))
    assert config.base_path == "/newstore_api/v0"
    assert config.api_keys == ()
    assert (config.merge, config.on_error, config.omit_unknown) == ("first", "zero_all", False)
    assert config.adapters[0].match_on == "external_identifier"


def test_the_config_path_falls_back_to_the_environment_then_the_embedded_sample(monkeypatch, config_file):
    path = config_file({"adapters": [{"name": "from-env", **STATIC}]})
    monkeypatch.setenv("ATP_BRIDGE_CONFIG", str(path))
    assert load_config().adapters[0].name == "from-env"
    monkeypatch.delenv("ATP_BRIDGE_CONFIG")
    config = load_config()
    assert [(a.name, a.type) for a in config.adapters] == [("sample", "csv")]


def test_environment_variables_are_expanded_with_defaults(monkeypatch, config_file):
    monkeypatch.setenv("NS_KEY", "k" * 24)
    monkeypatch.delenv("UNSET_BASE", raising=False)
    config = load_config(config_file({
        "auth": {"api_keys": ["${NS_KEY}"]},
        "base_path": "${UNSET_BASE:-/custom}",
        "adapters": [{"name": "a", **STATIC}]}))
    assert config.api_keys == ("k" * 24,)
    assert config.base_path == "/custom"
    assert "k" * 24 not in repr(config)


def test_every_problem_is_reported_at_once_with_file_and_key(tmp_path, monkeypatch):
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    write_yaml(tmp_path / "bridge.yaml", {"merge": "avg", "deadline_ms": "soon", "colour": "red",
                                           "auth": {"api_keys": ["${MISSING_SECRET}", "short"]}})
    write_yaml(tmp_path / "adapters" / "10-a.yaml", {"name": "a", "type": "static", "valuez": {}})
    write_yaml(tmp_path / "adapters" / "20-b.yaml", {"name": "b", "type": "nope"})
    write_yaml(tmp_path / "adapters" / "30-c.yaml", {"type": "static", "match_on": "sku"})
    probs = problems_of(tmp_path)
    bridge, a, b, c = (str(tmp_path / "bridge.yaml"), str(tmp_path / "adapters" / "10-a.yaml"),
                       str(tmp_path / "adapters" / "20-b.yaml"), str(tmp_path / "adapters" / "30-c.yaml"))
    text = "\n".join(probs)
    assert f"{bridge}: auth.api_keys.0: environment variable MISSING_SECRET is not set" in text
    assert f"{bridge}: merge: Must be one of: first, sum, min, max." in probs
    assert f"{bridge}: deadline_ms: Not a valid integer." in probs
    assert any(p.startswith(f"{bridge}: colour: unknown key") for p in probs)
    assert any(p.startswith(f"{bridge}: auth.api_keys.1: API keys must be at least 20") for p in probs)
    assert any(p.startswith(f"{a}: valuez: unknown key") for p in probs)
    assert f"{b}: type: unknown adapter type 'nope'; known types: csv, rest, redis, failing, static" in probs
    assert f"{c}: name: Missing data for required field." in probs
    assert f"{c}: match_on: Must be one of: external_identifier, product_id." in probs


def test_problems_never_echo_secret_values(config_file, monkeypatch):
    monkeypatch.setenv("SECRET", "s3cr3t-value-that-is-long")
    path = config_file({"auth": {"api_keys": "${SECRET}"}, "adapters": [{"name": "a", **STATIC}]})
    probs = problems_of(path)
    assert probs == [f"{path}: auth.api_keys: Not a valid list."]
    assert "s3cr3t" not in "\n".join(probs)


def test_invalid_yaml_names_the_file_and_line(config_file):
    path = config_file("adapters:\n  - name: a\n    type: [unclosed\n")
    (prob,) = problems_of(path)
    assert prob.startswith(f"{path}: line ") and "invalid YAML" in prob


def test_duplicate_names_and_bad_upstreams_are_problems(config_file):
    path = config_file({"adapters": [{"name": "a", **STATIC}, {"name": "a", **STATIC}]})
    assert problems_of(path) == [f"{path}: adapters[1].name: adapter name 'a' is already used in {path}"]


def test_a_missing_config_path_says_how_to_set_one(tmp_path):
    (prob,) = problems_of(tmp_path / "nope.yaml")
    assert "no such file or directory" in prob and "ATP_BRIDGE_CONFIG" in prob


def test_an_empty_adapter_list_is_a_problem(config_file):
    path = config_file({"adapters": []})
    assert problems_of(path) == [f"{path}: adapters: at least one adapter is required"]
