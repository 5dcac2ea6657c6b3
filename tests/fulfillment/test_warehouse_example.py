"""docs/fulfillment.md's worked example, exactly as printed there, run as a real
process (the receiver on loopback) against the emulator as a real process:
NewStore pushes generated orders, the example accepts and ships every one."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fulfillment.processes import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs" / "fulfillment.md"
KEY = "example-provider-key-0123456789"


def example_code() -> str:
    match = re.search(r"<!-- warehouse-example -->\n```python\n(.*?)```\n<!-- /warehouse-example -->",
                      DOCS.read_text(), re.S)
    assert match, "the worked example is missing from docs/fulfillment.md"
    return match.group(1)


def test_the_documented_warehouse_receives_accepts_and_ships_every_pushed_request(
        start_emulator, tmp_path):
    receiver_port = free_port()
    # tokens live 2 s, so the example also renews them while it works
    emulator = start_emulator(
        "--seed", "11", "--client-id", "warehouse", "--client-secret", "dev-secret",
        "--token-lifetime", "2", "--provider-url",
        f"http://127.0.0.1:{receiver_port}/fulfillment_requests", "--provider-key", KEY,
        "--duplicate-rate", "0.5", "--push-backoff", "0.1", "--generate", "4",
        "--interval", "0.2")
    script = tmp_path / "warehouse.py"
    script.write_text(example_code())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
           "NEWSTORE_URL": emulator.url, "NEWSTORE_CLIENT_ID": "warehouse",
           "NEWSTORE_CLIENT_SECRET": "dev-secret", "NEWSTORE_TOKEN_URL": emulator.token_url(),
           "PROVIDER_KEY": KEY, "RECEIVER_BIND": f"127.0.0.1:{receiver_port}"}
    env.pop("NEWSTORE_TOKEN", None)
    log = tmp_path / "warehouse.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        ids = wait_all_shipped(emulator, 4, proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    printed = log.read_text()
    deliveries = emulator.get("/_emulator/deliveries")["deliveries"]
    assert any(d["duplicate"] and d["status"] == 200 for d in deliveries)  # seed 11: some repeats
    for uuid in ids:
        assert printed.count(f"shipped {uuid}: ") == 1, printed  # duplicates were dropped
    assert "could not fulfil" not in printed
    shipped = [emulator.get(f"/_emulator/fulfillment_requests/{uuid}") for uuid in ids]
    assert all(r["acknowledged_at"] for r in shipped)
    assert {u["shipment"]["tracking_code"] for r in shipped for u in r["items"]} == {
        f"TRK-{uuid}" for uuid in ids}


def wait_all_shipped(emulator, count, proc, log) -> list[str]:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the example exited {proc.returncode}: {log.read_text()}")
        ids = list(dict.fromkeys(d["id"] for d in emulator.get("/_emulator/deliveries")
                                 ["deliveries"]))
        if len(ids) == count and all(
                u["status"] == "shipped"
                for uuid in ids for u in emulator.get(f"/_emulator/fulfillment_requests/{uuid}")
                ["items"]):
            return ids
        time.sleep(0.1)
    pytest.fail(f"not every request was shipped: {log.read_text()}")
