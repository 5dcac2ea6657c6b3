"""The emulator as a real process (``python -m atp_bridge.fulfillment``) on a
free loopback port, for the token, rate limit and push tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatorProcess:
    """``python -m atp_bridge.fulfillment --bind 127.0.0.1:PORT ARGS...``; its
    output goes to a file (a pipe could fill up and block it)."""

    def __init__(self, *args: str, log_dir: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"emulator-{self.port}.log"
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "atp_bridge.fulfillment",
                 "--bind", f"127.0.0.1:{self.port}", *args],
                stdout=out, stderr=subprocess.STDOUT, env=full_env)
        self._wait_up()

    def _wait_up(self) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"emulator exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                requests.get(f"{self.url}/_emulator/auth", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"emulator did not start: {self.log.read_text()}")

    def get(self, path: str) -> dict:
        resp = requests.get(f"{self.url}{path}", timeout=5)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def create(self, items, **extra) -> dict:
        body = {"items": [{"product_id": p, "price": price} for p, price in items], **extra}
        resp = requests.post(f"{self.url}/_emulator/fulfillment_requests", json=body, timeout=5)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def token_url(self, tenant: str = "acme-sandbox") -> str:
        return f"{self.url}/auth/realms/{tenant}/protocol/openid-connect/token"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
