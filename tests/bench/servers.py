"""The processes the benchmark measures: the floor and atp-bridge, plus /proc readings.

Both run under gunicorn with the settings of :mod:`atp_bridge.gunicorn_conf`
(the gevent worker, connections, timeouts, keep-alive), so the comparison stays in sync with
``atp-bridge serve``. The floor leaves out only what belongs to atp-bridge's
own work: access logging and server hooks (e.g. metrics clean-up).

    python -m tests.bench.servers --bind 127.0.0.1:8081 --workers 1   # the floor, $FLOOR_CSV
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import requests
from gunicorn.app.base import BaseApplication

from atp_bridge import gunicorn_conf
from tests.serve import ROOT, BridgeProcess, free_port, subprocess_env

# atp-bridge's own work, not the server's: the floor does none of it
FLOOR_SKIPS = {"accesslog", "access_log_format", "logconfig", "logconfig_dict", "statsd_host"}


def gunicorn_settings(known: dict) -> dict:
    """The plain settings of ``atp_bridge.gunicorn_conf`` that gunicorn knows, hooks left out."""
    return {k: v for k, v in vars(gunicorn_conf).items()
            if k in known and v is not None and not callable(v) and k not in FLOOR_SKIPS}


class FloorServer(BaseApplication):
    """Gunicorn serving :mod:`tests.bench.floor_app` with atp-bridge's settings."""

    def __init__(self, overrides: dict):
        self.overrides = overrides
        super().__init__()

    def load_config(self):
        settings = gunicorn_settings(self.cfg.settings)
        settings.update({k: v for k, v in self.overrides.items() if v is not None})
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from tests.bench.floor_app import app  # in the worker, after fork, like atp-bridge

        return app


class _Logged:
    """A server child whose stdout and stderr go straight to a log file: no pipe
    for the benchmark to drain, so no reader thread here competes for the CPU."""

    def wait_ready(self, timeout: float = 60.0, path: str = "/healthz"):
        """Poll ``path`` until 200. Unlike the test helper, a slow first answer (a
        worker still loading a big file) is waited for, not an error."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.url} exited {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                if requests.get(self.url + path, timeout=max(0.1, end - time.monotonic())).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.01)
        raise TimeoutError(f"{self.url}{path} not ready after {timeout}s; log:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.returncode, self.log_tail()


class Bridge(_Logged, BridgeProcess):
    """``atp-bridge serve`` (1 worker by default), output to ``log_path``."""

    def __init__(self, config, log_path: Path, workers: int = 1, env: dict | None = None):
        self.started = time.monotonic()
        self.log_path = log_path
        BridgeProcess.__init__(self, config, workers=workers, env=env, output=log_path)


class Floor(_Logged, BridgeProcess):
    """The floor app under gunicorn, same settings; output to ``log_path``."""

    def __init__(self, csv_path, log_path: Path, workers: int = 1):
        self.started = time.monotonic()
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.servers", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", str(workers)], env=subprocess_env(FLOOR_CSV=str(csv_path)), cwd=ROOT,
                stdout=out, stderr=out)


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (gunicorn's workers when ``pid`` is the master)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return sorted(out)


def status_mb(pid: int, key: str = "VmRSS") -> float:
    """A ``/proc/<pid>/status`` memory line (VmRSS, VmHWM, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the floor app ($FLOOR_CSV) under gunicorn.")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int)
    args = parser.parse_args()
    FloorServer({"bind": args.bind, "workers": args.workers, "worker_connections": args.connections}).run()


if __name__ == "__main__":
    main()
