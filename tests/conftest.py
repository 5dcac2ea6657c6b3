"""Shared fixtures: config writers, test adapters registered as a real entry point."""
from __future__ import annotations

import sys
import textwrap
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
    yield
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
