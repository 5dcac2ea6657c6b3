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
    # built-in names first, then the connectors (their list grows), then the entry points
    (unknown,) = [p for p in probs if p.startswith(f"{b}: type: ")]
    assert unknown.startswith(f"{b}: type: unknown adapter type 'nope'; known types: csv, rest, redis, ")
    assert unknown.endswith(", failing, static")
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


# -- an unset ${VAR}: reported once, as the cause, without the problems it causes --------

REST = {"type": "rest", "url": "http://erp.internal/atp"}
CACHE = {"name": "cache", "type": "redis", "mode": "cache", "upstream": "erp", "url": "redis://redis:6379/0"}


def unset(monkeypatch, *names):
    for name in names:
        monkeypatch.delenv(name, raising=False)


def test_an_unset_api_key_is_one_problem_not_three(tmp_path, monkeypatch):
    unset(monkeypatch, "MISSING_KEY")
    write_yaml(tmp_path / "bridge.yaml", {"auth": {"api_keys": ["${MISSING_KEY}"]}})
    write_yaml(tmp_path / "adapters" / "10-a.yaml", {"name": "a", **STATIC})
    assert problems_of(tmp_path) == [
        f"{tmp_path / 'bridge.yaml'}: auth.api_keys.0: environment variable MISSING_KEY is not set "
        f"(use ${{MISSING_KEY:-default}} for a default)"]


def test_an_adapter_with_an_unset_variable_is_still_known_to_the_cache_wrapping_it(tmp_path, monkeypatch):
    unset(monkeypatch, "MISSING_TOKEN")
    erp = write_yaml(tmp_path / "adapters" / "10-erp.yaml",
                     {"name": "erp", **REST, "auth": {"type": "bearer", "token": "${MISSING_TOKEN}"}})
    write_yaml(tmp_path / "adapters" / "20-cache.yaml", CACHE)
    assert problems_of(tmp_path) == [
        f"{erp}: auth.token: environment variable MISSING_TOKEN is not set "
        f"(use ${{MISSING_TOKEN:-default}} for a default)"]


def test_an_adapter_with_another_problem_is_still_known_to_the_cache_wrapping_it(tmp_path):
    erp = write_yaml(tmp_path / "adapters" / "10-erp.yaml", {"name": "erp", **REST, "timeout_ms": 0})
    write_yaml(tmp_path / "adapters" / "20-cache.yaml", CACHE)
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{erp}: timeout_ms: Must be greater than or equal to 1")


def test_an_upstream_nobody_defines_is_still_a_problem(tmp_path):
    write_yaml(tmp_path / "adapters" / "10-erp.yaml", {"name": "erp", **REST, "timeout_ms": 0})
    cache = write_yaml(tmp_path / "adapters" / "20-cache.yaml", {**CACHE, "upstream": "epr"})
    problems = problems_of(tmp_path)
    assert f"{cache}: upstream: no adapter named 'epr' (known: erp, cache)" in problems
    assert len(problems) == 2


def test_a_variable_unset_in_several_keys_of_a_file_is_one_problem_naming_each_key(config_file, monkeypatch):
    unset(monkeypatch, "ERP_HOST")
    path = config_file({"adapters": [{"name": "erp", "type": "rest", "url": "https://${ERP_HOST}/atp",
                                      "health_url": "https://${ERP_HOST}/health"}]})
    assert problems_of(path) == [
        f"{path}: adapters.0.url: environment variable ERP_HOST is not set (also used in "
        f"adapters.0.health_url; use ${{ERP_HOST:-default}} for a default)"]


def test_each_unset_variable_is_named_and_real_problems_beside_them_still_show(tmp_path, monkeypatch):
    unset(monkeypatch, "MISSING_TOKEN", "MISSING_TYPE", "MISSING_STORES")
    erp = write_yaml(tmp_path / "adapters" / "10-erp.yaml",
                     {"name": "erp", **REST, "auth": {"type": "bearer", "token": "${MISSING_TOKEN}"},
                      "timeout_ms": 0, "retrys": 2, "locations": ["${MISSING_STORES}"]})
    other = write_yaml(tmp_path / "adapters" / "20-other.yaml", {"name": "other", "type": "${MISSING_TYPE}"})
    problems = problems_of(tmp_path)
    # the unset variables as the files are read, then what the schemas found besides them
    assert [p.split(": ", 2)[1] for p in problems] == [
        "auth.token", "locations.0", "type", "timeout_ms", "retrys"], problems
    assert problems[1].startswith(f"{erp}: locations.0: environment variable MISSING_STORES is not set")
    assert problems[2].startswith(f"{other}: type: environment variable MISSING_TYPE is not set")
    assert problems[3].startswith(f"{erp}: timeout_ms: Must be greater than or equal to 1")
    assert problems[4].startswith(f"{erp}: retrys: unknown key")


def test_an_unset_variable_in_a_file_option_is_not_also_a_missing_file(config_file, monkeypatch, tmp_path):
    unset(monkeypatch, "CA_DIR")
    path = config_file({"adapters": [{"name": "erp", **REST, "ca_bundle": "${CA_DIR}/ca.pem"}]})
    assert problems_of(path) == [f"{path}: adapters.0.ca_bundle: environment variable CA_DIR is not set "
                                 f"(use ${{CA_DIR:-default}} for a default)"]
    # missing files beside it are problems of their own
    path = config_file({"adapters": [{"name": "cache", "type": "redis", "mode": "source", "url": "rediss://redis",
                                      "ssl_ca_certs": "${CA_DIR}/ca.pem", "ssl_certfile": "client.pem",
                                      "ssl_keyfile": "client.key"}]}, name="tls.yaml")
    assert problems_of(path) == [
        f"{path}: adapters.0.ssl_ca_certs: environment variable CA_DIR is not set "
        f"(use ${{CA_DIR:-default}} for a default)",
        f"{path}: adapters[0].ssl_certfile: no such file {tmp_path / 'client.pem'}",
        f"{path}: adapters[0].ssl_keyfile: no such file {tmp_path / 'client.key'}"]


def test_an_adapter_name_from_an_unset_variable_says_to_write_the_name_literally(tmp_path, monkeypatch):
    unset(monkeypatch, "ADAPTER_NAME")
    erp = write_yaml(tmp_path / "adapters" / "10-erp.yaml", {"name": "${ADAPTER_NAME}", **STATIC})
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{erp}: name: an adapter name cannot come from ${{...}}")


def test_an_adapter_that_failed_still_counts_for_duplicate_names(tmp_path):
    write_yaml(tmp_path / "adapters" / "10-a.yaml", {"name": "a", **STATIC})
    second = write_yaml(tmp_path / "adapters" / "20-a.yaml", {"name": "a", **STATIC, "valuez": {}})
    problems = problems_of(tmp_path)
    assert problems[0].startswith(f"{second}: valuez: unknown key")
    assert problems[1:] == [f"{second}: name: adapter name 'a' is already used in "
                            f"{tmp_path / 'adapters' / '10-a.yaml'}"]
