"""Fixtures for the adapter tests: real redis-server processes on free loopback ports."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest
import redis.connection

from tests import redis_server as rs


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


@pytest.fixture
def make_redis_adapter():
    """``make_redis_adapter(options, upstream=None, **common)`` -> a RedisAdapter
    built the way the bridge builds it (schema, then ``from_config``); closed at teardown."""
    from adapters.redis_cache import RedisAdapter, RedisOptionsSchema
    from atp_bridge.config_types import AdapterSpec

    built = []

    def make(options, upstream=None, name="cache", **common):
        opts = RedisOptionsSchema().load(options)
        spec = AdapterSpec(name=name, type="redis", options=opts, upstream=opts.get("upstream"), **common)
        adapter = RedisAdapter.from_config(spec, upstream=upstream)
        built.append(adapter)
        return adapter

    yield make
    for adapter in built:
        adapter.close()
