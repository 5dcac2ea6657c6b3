"""Shared fixtures: config writers, test adapters registered as a real entry point."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

import adapters

TESTS = Path(__file__).parent


@pytest.fixture(scope="session", autouse=True)
def test_adapter_entry_points(tmp_path_factory):
    """Install a tiny distribution whose entry points name the fake adapters,
    exactly as a third-party package would (group ``atp_bridge.adapters``)."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "atp_bridge_test_adapters-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: atp-bridge-test-adapters\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [atp_bridge.adapters]
        static = tests.fake_adapters:StaticAdapter
        failing = tests.fake_adapters:FailingAdapter
        """))
    sys.path.insert(0, str(site))
    if str(TESTS.parent) not in sys.path:
        sys.path.insert(0, str(TESTS.parent))
    adapters._plugins = None
    yield site
    sys.path.remove(str(site))
    adapters._plugins = None


@pytest.fixture(autouse=True)
def _clear_calls():
    from tests import fake_adapters
    fake_adapters.CALLS.clear()


def write_yaml(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def config_file(tmp_path):
    """Write a single-file config: ``config_file({"adapters": [...]})`` -> path."""
    def write(doc, name="atp-bridge.yaml"):
        return write_yaml(tmp_path / name, doc)
    return write


SPEC_SAMPLE = {
    "products": [
        {"product_id": "1000061", "external_identifier": "1000061"},
        {"product_id": "10000211", "external_identifier": "10000211"},
    ],
    "fulfillment_locations": ["US01", "US02", "DC01"],
}


# -- real `atp-bridge serve` processes ----------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(site: Path, **extra) -> dict:
    """Environment for an ``atp-bridge`` child: the test adapters' dist-info and
    this checkout on PYTHONPATH, so ``type: static|failing`` resolve there too."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATP_BRIDGE_CONFIG", "PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS.parent), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def atp_bridge_cmd(*args) -> list[str]:
    """The ``atp-bridge`` console script, run from this checkout."""
    return [sys.executable, "-m", "atp_bridge.cli", *args]


class Served:
    """A running ``atp-bridge serve`` child and its base URL."""

    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc, self.url = proc, url

    def get(self, path: str, timeout=10):
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def post(self, path: str, body: bytes, headers=None, timeout=10):
        req = urllib.request.Request(self.url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def stop(self, timeout=15) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def serve(test_adapter_entry_points):
    """``serve(config_path, "--workers", "2")`` starts ``atp-bridge serve`` on a free
    port and waits until /healthz answers; every child is stopped at teardown."""
    started: list[Served] = []

    def start(config, *args, env=None) -> Served:
        port = free_port()
        proc = subprocess.Popen(atp_bridge_cmd("serve", "--config", str(config), "--bind", f"127.0.0.1:{port}",
                                               *args),
                                env=subprocess_env(test_adapter_entry_points, **(env or {})),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        served = Served(proc, f"http://127.0.0.1:{port}")
        started.append(served)
        give_up = time.monotonic() + 20
        while time.monotonic() < give_up:
            if proc.poll() is not None:
                raise AssertionError(f"atp-bridge serve exited {proc.returncode}: {proc.stderr.read()}")
            try:
                if served.get("/healthz", timeout=1)[0] == 200:
                    return served
            except OSError:
                time.sleep(0.1)
        raise AssertionError("atp-bridge serve did not answer /healthz within 20 s")

    yield start
    for served in started:
        served.stop()
