"""Start real ``atp-bridge serve`` processes for end-to-end tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BridgeProcess:
    """``atp-bridge serve`` in a subprocess on a free loopback port."""

    def __init__(self, config=None, workers: int = 1, env: dict | None = None, extra_pythonpath=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "atp_bridge.cli", "serve", "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(workers)]
        if config is not None:
            args += ["--config", str(config)]
        full_env = {k: v for k, v in os.environ.items() if k != "ATP_BRIDGE_CONFIG"}
        full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *map(str, extra_pythonpath),
                                                  full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def wait_ready(self, timeout: float = 20.0, path: str = "/healthz") -> "BridgeProcess":
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"atp-bridge serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"atp-bridge serve not ready on {self.url}{path} after {timeout}s")

    def post(self, body, path="/availabilities", **kw):
        return requests.post(self.url + path, json=body, timeout=30, **kw)

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return out, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
