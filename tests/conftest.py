"""Shared fixtures: config writers, test adapters registered as a real entry point."""
from __future__ import annotations

import shutil
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import redis.connection
import yaml

from atp_bridge import adapters
from tests import redis_server as rs

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


@pytest.fixture(autouse=True)
def _forget_secrets():
    """The masker is per process: a secret one test's config recorded must not
    mask another test's output."""
    yield
    from atp_bridge.errors import SECRETS
    SECRETS.clear()


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


# -- real redis-server processes (never the machine's shared one) ----------

def _require_redis():
    if shutil.which("redis-server") is None:
        pytest.fail(rs.INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="session")
def redis_session_server(tmp_path_factory):
    """One standalone redis-server for the session (tests use :func:`redis_db`)."""
    _require_redis()
    server = rs.RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.terminate()


@pytest.fixture
def redis_db(redis_session_server):
    """The session's redis-server, emptied for this test."""
    with redis_session_server.client() as c:
        c.flushall()
    return redis_session_server


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which the test may kill and restart."""
    _require_redis()
    server = rs.RedisServer(tmp_path / "own-redis").start()
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory):
    """A redis-server speaking only TLS, with a self-signed certificate for 127.0.0.1."""
    _require_redis()
    if not rs.tls_supported():
        pytest.fail("this redis-server was built without TLS support (BUILD_TLS=yes); "
                    "the rediss:// tests need a TLS-enabled build", pytrace=False)
    folder = tmp_path_factory.mktemp("tls")
    server = rs.RedisServer(folder / "server", tls=rs.TlsFiles(folder)).start()
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def mtls_redis(tls_redis, tmp_path_factory):
    """A TLS redis-server that also demands a client certificate (mutual TLS);
    the self-signed server certificate is the only CA, so it is also the client's."""
    server = rs.RedisServer(tmp_path_factory.mktemp("mtls") / "server", tls=tls_redis.tls,
                            tls_auth_clients=True).start()
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A real 3-master Redis Cluster on loopback ports."""
    _require_redis()
    cluster = rs.RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def clean_cluster(redis_cluster):
    for node in redis_cluster.nodes:
        with node.client() as c:
            c.flushall()
    return redis_cluster


class RoundTrips:
    """Counts writes to Redis sockets: one per command, one per pipeline.

    ``by_port`` tells how many round trips went to each server.
    """

    def __init__(self):
        self.by_port: Counter = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_port.values())

    def reset(self) -> None:
        self.by_port.clear()


@pytest.fixture
def round_trips(monkeypatch):
    """Count round trips made by redis-py in this test (a hook, not a mock: the
    command still goes to the real server)."""
    counter = RoundTrips()
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        counter.by_port[getattr(self, "port", None)] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return counter


# -- real `atp-bridge serve` processes ----------------------------------------

@pytest.fixture
def serve(test_adapter_entry_points):
    """``serve(config_path, "--connections", "50", workers=2)`` starts ``atp-bridge serve``
    (with the test adapters importable) and waits for /healthz; stopped at teardown."""
    from tests.serve import BridgeProcess

    started = []

    def start(config, *args, workers: int = 1, env=None):
        started.append(BridgeProcess(config, *args, workers=workers, env=env,
                                     extra_pythonpath=[test_adapter_entry_points]))
        return started[-1].wait_ready()

    yield start
    for process in started:
        process.stop()
