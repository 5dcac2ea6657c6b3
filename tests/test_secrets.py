"""Secret masking: every value from ``${VAR}`` is recorded by the config loader
and masked as ``***`` in errors, log lines and ``/readyz`` details."""
import logging
import re
import sys
import time
from urllib.parse import quote

import orjson
import pytest

from atp_bridge import logs
from atp_bridge.bridge import Bridge
from atp_bridge.config import load_config
from atp_bridge.errors import SECRETS, AdapterError, ConfigError, SecretMasker, secret_forms
from tests.conftest import write_yaml
from tests.erp_server import FakeErp
from tests.serve import free_port

KEY = "qk_Zm9v+YmFy/cXV4eHl6=="  # base64-ish: '+', '/' and '=' as real API keys have them


@pytest.fixture(autouse=True)
def no_secrets_before_or_after():
    SECRETS.clear()
    yield
    SECRETS.clear()


@pytest.fixture
def erp():
    with FakeErp() as server:
        yield server


def masker(*secrets: str) -> SecretMasker:
    m = SecretMasker()
    for s in secrets:
        m.add(s)
    return m


# -- the masker ----------------------------------------------------------------

def test_a_secret_is_masked_as_is_percent_encoded_json_escaped_and_as_a_server_decodes_it():
    m = masker(KEY)
    encoded = quote(KEY, safe="")
    forms = {
        "as is": KEY,
        "percent-encoded": encoded,
        "lower-case hex": re.sub("%[0-9A-F]{2}", lambda h: h.group(0).lower(), encoded),
        "form-decoded ('+' read as a space)": KEY.replace("+", " "),
        "JSON with escaped slashes": KEY.replace("/", "\\/"),
    }
    assert len(set(forms.values())) == len(forms)
    for how, form in forms.items():
        assert m.mask(f"POST /atp?api_key={form} failed") == "POST /atp?api_key=*** failed", how


def test_overlapping_secrets_leave_no_fragment_of_either():
    m = masker("abcdef-1", "def-1-ghij")
    assert m.mask("<abcdef-1-ghij>") == "<***>"
    assert m.mask("<def-1-ghij abcdef-1>") == "<*** ***>"
    m = masker("token-123", "token-123456")  # one inside the other: the longer one wins
    assert m.mask("a token-123456 b token-123 c") == "a *** b *** c"


def test_a_secret_cut_short_right_before_an_ellipsis_is_masked_too():
    m = masker(KEY)
    assert m.mask(f"HTTP 500: request was /atp?api_key={KEY[:9]}...") == \
        "HTTP 500: request was /atp?api_key=***..."
    assert m.mask("a sentence that trails off...") == "a sentence that trails off..."


def test_values_shorter_than_four_characters_are_not_secrets():
    m = masker("2", "on", "abc", "")
    assert m.secrets == ()
    assert m.mask("2 workers, tls on, abc") == "2 workers, tls on, abc"
    assert masker("abcd").mask("xabcdx") == "x***x"


def test_without_secrets_masking_returns_the_very_same_text():
    text = "adapter 'erp': HTTP 500"
    assert SecretMasker().mask(text) is text
    assert masker(KEY).mask(text) is text
    info = {"circuit": "closed"}
    assert SecretMasker().mask_value(info) is info


def test_a_url_from_the_environment_also_masks_its_password_and_query_values_alone():
    forms = secret_forms("https://bridge:pw-0f-erp@erp.internal/atp?api_key=qk-123456&v=2")
    assert {"pw-0f-erp", "qk-123456"} <= forms
    assert "2" not in forms and "bridge" not in forms  # short values and the user name are not secrets
    m = masker("https://bridge:pw-0f-erp@erp.internal/atp?api_key=qk-123456&v=2")
    # what the REST adapter shows (the URL without credentials and query) stays readable
    assert m.mask("POST https://erp.internal/atp: HTTP 500: api_key=qk-123456") == \
        "POST https://erp.internal/atp: HTTP 500: api_key=***"


def test_mask_value_masks_every_string_in_nested_info():
    m = masker("secret-host.internal")
    assert m.mask_value({"redis": "redis://secret-host.internal:6379/0", "calls": 3,
                         "nodes": ["secret-host.internal:7000"]}) == \
        {"redis": "redis://***:6379/0", "calls": 3, "nodes": ["***:7000"]}


# -- what the config loader records ------------------------------------------------

def test_loading_a_config_records_every_value_from_the_environment_and_no_default(config_file, monkeypatch):
    monkeypatch.setenv("ERP_QUERY_KEY", KEY)
    monkeypatch.setenv("ERP_TIMEOUT_MS", "1500")
    monkeypatch.delenv("ERP_HEALTH_TOKEN", raising=False)
    load_config(config_file({"adapters": [{
        "name": "erp", "type": "rest", "url": "http://erp.internal/atp?api_key=${ERP_QUERY_KEY}",
        "timeout_ms": "${ERP_TIMEOUT_MS}",
        "health_url": "http://erp.internal/health/${ERP_HEALTH_TOKEN:-default-health-token}",
        "headers": {"X-Literal": "literal-value-$$1234"}}]}))
    recorded = set(SECRETS.secrets)
    assert {KEY, "1500"} <= recorded
    # a default is written in the config file itself, in plain sight: not a secret
    assert not any("default-health-token" in s for s in recorded)
    assert not any("literal" in s or "erp.internal" in s for s in recorded)  # only what came from ${}


def test_an_unset_variable_is_a_problem_and_records_nothing(config_file, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError):
        load_config(config_file({"adapters": [{"name": "a", "type": "static",
                                               "values": {"S1": {"A": "${NOT_SET_ANYWHERE}"}}}]}))
    assert SECRETS.secrets == ()


def test_an_adapter_name_from_the_environment_is_a_problem_in_both_config_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTER_NAME", "erp-prod")
    single = write_yaml(tmp_path / "one.yaml", {"adapters": [{"name": "${ADAPTER_NAME}", "type": "static"}]})
    write_yaml(tmp_path / "dir" / "adapters" / "10-erp.yaml", {"name": "${ADAPTER_NAME}", "type": "static"})
    for path, file, key in [(single, single, "adapters.0.name"),
                            (tmp_path / "dir", tmp_path / "dir" / "adapters" / "10-erp.yaml", "name")]:
        with pytest.raises(ConfigError) as exc:
            load_config(path)
        assert exc.value.problems == [
            f"{file}: {key}: an adapter name cannot come from ${{...}}: names appear unmasked in "
            f"metrics, the X-ATP-Degraded header and the access log; write it literally"]
    # the same value written literally is fine, even though "erp-prod" is now a recorded secret
    literal = write_yaml(tmp_path / "ok.yaml", {"adapters": [{"name": "erp-prod", "type": "static"}]})
    assert load_config(literal).adapters[0].name == "erp-prod"


# -- errors, log lines, health ----------------------------------------------------------

def test_adapter_and_config_errors_are_masked_when_they_are_built():
    SECRETS.add(KEY)
    error = AdapterError("erp", f"POST http://erp/atp: HTTP 500: /atp?api_key={KEY}")
    assert error.message == "POST http://erp/atp: HTTP 500: /atp?api_key=***"
    assert str(error) == "adapter 'erp': POST http://erp/atp: HTTP 500: /atp?api_key=***"
    problems = ConfigError([f"c.yaml: adapters[0].ca_bundle: no such file /run/{KEY}/ca.pem"]).problems
    assert problems == ["c.yaml: adapters[0].ca_bundle: no such file /run/***/ca.pem"]


def test_the_json_log_formatter_masks_the_message_and_the_exception_text():
    SECRETS.add(KEY)
    try:
        raise RuntimeError(f"redis://:{KEY}@127.0.0.1:1/0 refused")
    except RuntimeError:
        record = logging.LogRecord("atp_bridge.x", logging.ERROR, __file__, 1, "cannot reach %s",
                                   (f"http://erp/health/{KEY}",), sys.exc_info())
    line = orjson.loads(logs.JsonFormatter().format(record))
    assert line["msg"] == "cannot reach http://erp/health/***"
    assert "RuntimeError: redis://:***@127.0.0.1:1/0 refused" in line["exc"]
    assert KEY not in orjson.dumps(line).decode()


def test_the_plain_cli_formatter_masks_too():
    SECRETS.add(KEY)
    record = logging.LogRecord("atp_bridge", logging.WARNING, __file__, 1, "key %s", (KEY,), None)
    assert logs.MaskingFormatter().format(record) == "key ***"


def test_readyz_details_and_info_from_bridge_health_are_masked(erp, config_file, monkeypatch):
    monkeypatch.setenv("ERP_QUERY_KEY", KEY)
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    monkeypatch.setenv("REDIS_URL", redis_url)
    erp.mode = "echo"
    config = load_config(config_file({"adapters": [
        {"name": "erp", "type": "rest", "url": f"{erp.url}/atp?api_key=${{ERP_QUERY_KEY}}",
         "health_url": f"{erp.url}/health/${{ERP_QUERY_KEY}}"},
        {"name": "wms", "type": "redis", "mode": "source", "url": "${REDIS_URL}"}]}))
    bridge = Bridge.from_config(config)
    try:
        health = bridge.health()
    finally:
        bridge.close()
    assert erp.log[-1].target == f"/health/{KEY}"  # the ERP did get the key in the path
    assert health["erp"].ok is False
    assert health["erp"].detail == f"GET http://127.0.0.1:{erp.port}/health/***: HTTP 500"
    assert health["wms"].ok is False and health["wms"].info["redis"] == "***"
    assert health["wms"].detail.startswith("Redis at *** unreachable: ConnectionError")
    text = orjson.dumps({name: h.as_dict() for name, h in health.items()}).decode()
    assert KEY not in text and redis_url not in text


def test_a_secret_that_a_rest_error_excerpt_cuts_in_two_leaves_no_part_of_it(erp, config_file, monkeypatch):
    monkeypatch.setenv("ERP_QUERY_KEY", KEY)
    erp.mode = "echo"
    # the excerpt keeps 197 characters and "...": put the key's first 10 characters before the cut
    erp.echo_prefix = "x" * (197 - 10 - len("POST /atp?api_key="))
    config = load_config(config_file({"deadline_ms": 2000, "adapters": [
        {"name": "erp", "type": "rest", "url": f"{erp.url}/atp?api_key=${{ERP_QUERY_KEY}}", "retries": 0}]}))
    bridge = Bridge.from_config(config)
    try:
        answer = bridge.answer(["A"], ["A"], ["S1"], started=time.monotonic())
    finally:
        bridge.close()
    echoed = f"{erp.echo_prefix}POST {erp.requests()[0].target}"
    assert echoed[:197].endswith(KEY[:10])  # unmasked, the excerpt would end in the key's start
    (error,) = answer.outcomes
    assert answer.degraded == ["error:erp"] and isinstance(error, AdapterError)
    assert error.message.endswith("POST /atp?api_key=***...")
    assert not any(KEY[i:i + 4] in error.message for i in range(len(KEY) - 3))
