"""Real ``atp-bridge serve`` processes for end-to-end tests (and the benchmark)."""
from __future__ import annotations

import os
import signal
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


def atp_bridge_cmd(*args) -> list[str]:
    """The ``atp-bridge`` console script, run from this checkout."""
    return [sys.executable, "-m", "atp_bridge.cli", *args]


def subprocess_env(*pythonpath, **extra) -> dict:
    """Environment for an ``atp-bridge`` child: this checkout (and e.g. the test
    adapters' dist-info) on PYTHONPATH, none of the caller's bridge settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATP_BRIDGE_CONFIG", "PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


class BridgeProcess:
    """``atp-bridge serve`` in a subprocess on a free loopback port.

    ``config=None`` serves the embedded default. ``output``: a file path that
    gets the server's stdout and stderr (default: pipes, read by :meth:`stop`).
    """

    def __init__(self, config=None, *args: str, workers: int = 1, env: dict | None = None,
                 extra_pythonpath=(), output: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = atp_bridge_cmd("serve", "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), *args)
        if config is not None:
            cmd += ["--config", str(config)]
        out = open(output, "ab") if output is not None else subprocess.PIPE
        try:
            self.proc = subprocess.Popen(cmd, env=subprocess_env(*extra_pythonpath, **(env or {})),
                                         stdout=out, stderr=out, text=True)
        finally:
            if output is not None:
                out.close()  # the child has its own copy

    def wait_ready(self, timeout: float = 30.0, path: str = "/healthz") -> "BridgeProcess":
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"atp-bridge serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"atp-bridge serve not ready on {self.url}{path} after {timeout}s")

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, body, path: str = "/availabilities", **kw) -> requests.Response:
        data = body if isinstance(body, bytes) else None
        return requests.post(self.url + path, data=data, json=None if data else body,
                             timeout=kw.pop("timeout", 30), **kw)

    def stop(self, timeout: float = 15) -> tuple[int, str]:
        """SIGTERM (gunicorn drains in-flight requests); returns (exit code, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
