"""A real Prometheus server for the tests, on a free loopback port.

Debian's ``prometheus`` package brings the server and ``promtool``; a missing
binary is a loud failure with the install hint, never a skip. Each server has
its own data directory and config (scrape and rule evaluation every second),
and is killed at the end; nothing of the machine's own Prometheus is touched.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import requests
import yaml

from tests.serve import free_port

INSTALL_HINT = "prometheus not found: apt-get install prometheus (Debian's package: server and promtool)"


def require(binary: str = "prometheus") -> str:
    """Path of ``binary``; raises RuntimeError with the install hint when absent."""
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (host:port) as job ``job`` and
    evaluating ``rule_files``, in ``directory``."""

    def __init__(self, directory: Path, targets: list[str], rule_files: list[Path], job: str = "atp-bridge",
                 interval: str = "1s"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        }))
        self.log = self.directory / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "PrometheusServer":
        exe = require()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={self.config}", f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=log)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready on {self.url} after {timeout}s: {self.log.read_text()[-2000:]}")

    def query(self, expr: str) -> list[dict]:
        """The instant vector (or scalar, as one sample) of ``expr`` now, through /api/v1/query."""
        body = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10).json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]

    def alerts(self) -> list[dict]:
        """Every pending or firing alert, from /api/v1/alerts."""
        return requests.get(self.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def targets(self) -> list[dict]:
        """The scrape targets' health and last error, for a failure message."""
        active = requests.get(self.url + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        return [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")} for t in active]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
