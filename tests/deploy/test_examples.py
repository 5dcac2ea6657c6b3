"""deploy/examples: every example config passes `atp-bridge check-config`.

The examples use the csv, rest and redis adapters; until those are merged
(branches csv, rest, redis) the matching cases fail with "unknown adapter type".
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from atp_bridge.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLES = sorted(p for p in (DEPLOY / "examples").iterdir() if p.is_dir())
SECRETS = {"NEWSTORE_API_KEY": "example-newstore-key-0123456789", "ERP_TOKEN": "example-erp-token",
           "ERP_PASSWORD": "example-erp-password"}


def test_the_four_documented_examples_exist():
    assert [p.name for p in EXAMPLES] == ["csv-only", "erp-behind-redis-cache", "erp-only",
                                          "stores-csv-plus-dc-erp"]
    for example in EXAMPLES:
        assert (example / "bridge.yaml").is_file()
        assert all(f.name[:2].isdigit() and f.name[2] == "-" for f in (example / "adapters").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_check_config(example):
    result = CliRunner().invoke(main, ["check-config", "--config", str(example)], env=SECRETS)
    assert result.exit_code == 0, result.output
    for secret in SECRETS.values():
        assert secret not in result.output


def test_the_demo_erp_answers_the_rest_adapters_default_wire_format():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(DEPLOY / "demo-erp" / "server.py")],
                            env={**os.environ, "PORT": str(port), "DEMO_ERP_TOKEN": "t0k"})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                assert urllib.request.urlopen(f"{url}/health", timeout=1).status == 200
                break
            except OSError:
                time.sleep(0.05)
        body = {"items": [{"product": "1000061", "location": "DC01"}, {"product": "B", "location": "S1"}]}
        req = urllib.request.Request(f"{url}/atp", data=orjson.dumps(body), method="POST",
                                     headers={"Authorization": "Bearer t0k", "Content-Type": "application/json"})
        answer = orjson.loads(urllib.request.urlopen(req, timeout=5).read())
        assert [(i["product"], i["location"]) for i in answer["items"]] == [("1000061", "DC01"), ("B", "S1")]
        assert all(isinstance(i["atp"], int) and i["atp"] >= 0 for i in answer["items"])
        req.remove_header("Authorization")
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(req, timeout=5)
        assert denied.value.code == 401
    finally:
        proc.terminate()
        proc.wait(5)
