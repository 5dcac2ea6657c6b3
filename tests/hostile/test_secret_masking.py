"""Issue item 9: a secret in an ERP URL's query string must not reach any output.

A real ``atp-bridge serve`` is pointed at an ERP stand-in that quotes the
request it got (path, raw query string and decoded query) in its 500 body and
fails its health URL, and at a Redis that is not there with a password in its
URL. Both secrets come from ``${VAR}``. Then: no log line (access lines
included, at DEBUG), no ``/readyz`` detail, no ``atp-bridge query`` output and
no ``check-config`` output holds any 8-character piece of either secret, in
any encoding the ERP could echo; ``***`` stands where they were.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
import requests

from tests.conftest import write_yaml
from tests.erp_server import FakeErp
from tests.serve import BridgeProcess, atp_bridge_cmd, free_port, subprocess_env

pytestmark = pytest.mark.slow

ERP_QUERY_KEY = "qk_Zm9v+YmFy/cXV4eHl6=="  # base64-ish, as real API keys are
REDIS_PW = "rP4ss+w0rd-secret-77"
REQUEST = {"products": [{"product_id": "A", "external_identifier": "A"}],
           "fulfillment_locations": ["S1", "R1"]}
# how each secret can show up: as configured, percent-encoded, as a server decodes an unencoded '+'
SECRET_FORMS = [ERP_QUERY_KEY, quote(ERP_QUERY_KEY, safe=""), ERP_QUERY_KEY.replace("+", " "),
                REDIS_PW, quote(REDIS_PW, safe="")]


def leaks(text: str, n: int = 8) -> list[str]:
    """Every n-character piece of a secret (in any of its forms) found in ``text``."""
    return sorted({form[i:i + n] for form in SECRET_FORMS for i in range(len(form) - n + 1)
                   if form[i:i + n] in text})


@dataclass
class Run:
    erp: FakeErp
    redis_port: int
    config: Path
    post: requests.Response
    readyz: requests.Response
    log_lines: list[dict]
    log_text: str
    query: subprocess.CompletedProcess
    query_json: subprocess.CompletedProcess
    check: subprocess.CompletedProcess
    check_broken: subprocess.CompletedProcess


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(atp_bridge_cmd(*args), env=env, capture_output=True, text=True, timeout=60)


def adapters_config(erp: FakeErp, redis_port: int, **erp_extra) -> dict:
    return {"deadline_ms": 2000, "adapters": [
        {"name": "erp", "type": "rest", "locations": ["S*"], "retries": 0,
         "url": f"{erp.url}/atp?api_key=${{ERP_QUERY_KEY}}",
         "health_url": f"{erp.url}/health/${{ERP_QUERY_KEY}}",  # a token in the path: kept in messages
         "circuit": {"failure_threshold": 1, "reset_s": 30},   # its opening is logged with the last error
         **erp_extra},
        {"name": "wms", "type": "redis", "mode": "source", "locations": ["R*"],
         "url": f"redis://:${{REDIS_PW}}@127.0.0.1:{redis_port}/0"}]}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """The whole scenario once (one server start on two shared cores); the tests read its results."""
    tmp = tmp_path_factory.mktemp("secret-masking")
    redis_port = free_port()  # nobody listens there: connection refused
    env = {"ERP_QUERY_KEY": ERP_QUERY_KEY, "REDIS_PW": REDIS_PW, "ERP_CA_BUNDLE": str(tmp / "missing-ca.pem"),
           "ATP_BRIDGE_LOG_LEVEL": "DEBUG", "ATP_BRIDGE_LOG_FLUSH_MS": "0"}
    with FakeErp() as erp:
        erp.mode = "echo"
        config = write_yaml(tmp / "atp-bridge.yaml", adapters_config(erp, redis_port))
        broken = write_yaml(tmp / "broken.yaml", adapters_config(erp, redis_port, ca_bundle="${ERP_CA_BUNDLE}"))
        log = tmp / "serve.log"
        served = BridgeProcess(config, env=env, output=log)
        try:
            try:
                served.wait_ready()
            except Exception as e:  # its output went to the file, not to a pipe
                pytest.fail(f"atp-bridge serve did not start ({e!r}):\n{log.read_text()}")
            post = served.post(REQUEST)
            readyz = served.get("/readyz")
        finally:
            served.stop()
        child_env = subprocess_env(**env)
        query_args = ("query", "--config", str(config), "--product", "A", "--location", "S1", "--location", "R1")
        query = cli(child_env, *query_args)
        query_json = cli(child_env, *query_args, "--json")
        check = cli(child_env, "check-config", "--config", str(config))
        check_broken = cli(child_env, "check-config", "--config", str(broken))
    text = log.read_text()
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    return Run(erp, redis_port, config, post, readyz, lines, text, query, query_json, check, check_broken)


def test_the_erp_really_got_the_key_and_echoed_it(run):
    (seen, *_) = run.erp.requests("/atp")
    assert seen.target == f"/atp?api_key={ERP_QUERY_KEY}"           # sent as configured
    assert seen.query == {"api_key": ERP_QUERY_KEY.replace("+", " ")}  # and read back decoded
    assert run.erp.requests(f"/health/{ERP_QUERY_KEY}")  # the health URL carries it in its path


def test_the_webhook_answer_is_degraded_zeros(run):
    assert run.post.status_code == 200
    assert run.post.headers["X-ATP-Degraded"] == "error:erp,error:wms"
    assert [a["atp"] for a in run.post.json()["availabilities"]] == [0, 0]
    assert not leaks(run.post.text + str(run.post.headers))


def test_no_log_line_holds_a_piece_of_either_secret(run):
    assert run.log_lines, run.log_text
    assert any(line.get("msg") == "access" for line in run.log_lines)  # access lines were written too
    assert leaks(run.log_text) == []


def test_the_degraded_warning_shows_stars_where_the_secrets_were(run):
    (warning,) = [line for line in run.log_lines if line.get("msg", "").startswith("degraded answer")]
    assert warning["level"] == "WARNING"
    assert (f"adapter 'erp': POST {run.erp.url}/atp: HTTP 500: internal error; request was: "
            f'POST /atp?api_key=*** query={{"api_key":"***"}}') in warning["msg"]
    assert f"Redis at redis://:***@127.0.0.1:{run.redis_port}/0" in warning["msg"]


def test_the_circuit_opening_line_shows_the_last_error_masked(run):
    (opened,) = [line for line in run.log_lines if "circuit closed -> open" in line.get("msg", "")]
    assert "(last error: adapter 'erp': " in opened["msg"] and "api_key=***" in opened["msg"]


def test_readyz_details_show_stars_where_the_secrets_were(run):
    assert run.readyz.status_code == 503
    body = run.readyz.json()["adapters"]
    assert body["erp"]["ok"] is False
    assert body["erp"]["detail"] == f"GET {run.erp.url}/health/***: HTTP 500"
    assert body["wms"]["ok"] is False
    assert body["wms"]["redis"] == f"redis://:***@127.0.0.1:{run.redis_port}/0"
    assert body["wms"]["detail"].startswith(f"Redis at redis://:***@127.0.0.1:{run.redis_port}/0 unreachable")
    assert leaks(run.readyz.text) == []


def test_query_output_shows_stars_where_the_secrets_were(run):
    assert run.query.returncode == 2, run.query.stderr
    out = run.query.stdout
    assert "adapter erp:" in out and 'api_key=*** query={"api_key":"***"}' in out
    assert f"redis://:***@127.0.0.1:{run.redis_port}/0" in out
    assert "DEGRADED: error:erp,error:wms" in run.query.stderr
    # the bridge's own warnings reach the CLI's stderr masked too
    assert "degraded answer" in run.query.stderr and "api_key=***" in run.query.stderr
    assert leaks(out + run.query.stderr) == []


def test_query_json_output_shows_stars_where_the_secrets_were(run):
    assert run.query_json.returncode == 2, run.query_json.stderr
    doc = orjson.loads(run.query_json.stdout)
    assert 'api_key=*** query={"api_key":"***"}' in doc["adapters"]["erp"]["error"]
    assert doc["adapters"]["wms"]["error"].startswith(f"adapter 'wms': Redis at redis://:***@127.0.0.1:")
    assert leaks(run.query_json.stdout + run.query_json.stderr) == []


def test_check_config_output_holds_no_secret(run):
    assert run.check.returncode == 0, run.check.stderr
    assert run.check.stdout.startswith(f"OK {run.config}: 2 adapter(s)")
    assert leaks(run.check.stdout + run.check.stderr) == []


def test_a_check_config_problem_quoting_a_value_from_the_environment_shows_stars(run):
    assert run.check_broken.returncode == 1
    assert "adapters[0].ca_bundle: no such file ***" in run.check_broken.stderr
    assert "missing-ca.pem" not in run.check_broken.stderr
    assert leaks(run.check_broken.stdout + run.check_broken.stderr) == []
