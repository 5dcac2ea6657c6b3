"""Connections and keys: URL/password/TLS/pool options, key templates, a real 3-master cluster."""
import time

import pytest
import redis
from redis.cluster import RedisCluster

from atp_bridge.adapters.base import Batch
from atp_bridge.adapters.redis_conn import KeyTemplate, make_client, redact_url
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError, ConfigError
from tests import fake_adapters
from tests.fake_adapters import StaticAdapter
from tests.redis_server import RedisServer, tls_supported


def batch(products, locations):
    return Batch(list(products), list(locations), time.monotonic() + 3)


def test_a_key_template_renders_pairs_and_derives_escaped_scan_patterns():
    keys = KeyTemplate("atp:{location}:{product}", prefix="eu*1:")
    assert keys.keys([("A", "S1"), ("B?", "DC")]) == ["eu*1:atp:S1:A", "eu*1:atp:DC:B?"]
    assert keys.match_pattern() == r"eu\*1:atp:*:*"
    assert keys.match_pattern(product="B?") == r"eu\*1:atp:*:B\?"
    assert keys.match_pattern(location="S[1]", product="A") == r"eu\*1:atp:S\[1\]:A"
    assert KeyTemplate("{product}|{location}", "{x}").keys([("P", "L")]) == ["{x}P|L"]


def test_urls_are_logged_without_their_password():
    assert redact_url("rediss://user:s3cret@cache:6380/0") == "rediss://user:***@cache:6380/0"
    assert redact_url("redis://:s3cret@cache:6379") == "redis://:***@cache:6379"
    assert redact_url("redis://cache:6379") == "redis://cache:6379"


def test_the_pool_is_bounded_and_socket_timeouts_come_from_timeout_ms():
    client = make_client({"url": "redis://127.0.0.1:1/0", "timeout_ms": 150, "max_connections": 7})
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool) and pool.max_connections == 7
    assert pool.connection_kwargs["socket_timeout"] == 0.15
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.15
    assert pool.connection_kwargs["retry"].get_retries() == 0  # the deadline is the retry budget
    client.close()


def test_the_password_comes_from_an_environment_variable_in_the_url_or_the_password_key(
        tmp_path, config_file, monkeypatch, make_redis_adapter):
    server = RedisServer(tmp_path / "auth", "--requirepass", "p4ss-w0rd").start()
    try:
        monkeypatch.setenv("REDIS_PASSWORD", "p4ss-w0rd")
        config = load_config(config_file({"adapters": [
            {"name": "wms", "type": "redis", "mode": "source",
             "url": f"redis://:${{REDIS_PASSWORD}}@127.0.0.1:{server.port}/0"}]}))
        spec = config.adapters[0]
        with server.client(password="p4ss-w0rd") as r:
            r.set("atp:S1:A", 4)
        by_url = make_redis_adapter({"mode": "source", "url": spec.options["url"]}, name="wms")
        by_key = make_redis_adapter({"mode": "source", "url": f"redis://127.0.0.1:{server.port}/0",
                                     "password": "p4ss-w0rd"}, name="wms")
        wrong = make_redis_adapter({"mode": "source", "url": f"redis://127.0.0.1:{server.port}/0",
                                    "password": "nope"}, name="wms")
        assert by_url.fetch(batch("A", ["S1"])) == [4] and by_key.fetch(batch("A", ["S1"])) == [4]
        assert "p4ss" not in by_url.where and by_url.where.startswith("redis://:***@")
        with pytest.raises(AdapterError):
            wrong.fetch(batch("A", ["S1"]))
    finally:
        server.terminate()


def test_this_redis_server_was_built_with_tls():
    assert tls_supported(), "redis-server lacks TLS: rediss:// cannot be tested here"


def test_a_rediss_url_caches_over_tls_verified_against_ssl_ca_certs(tls_redis, make_redis_adapter):
    cache = make_redis_adapter({"mode": "cache", "url": tls_redis.url, "upstream": "erp",
                                "ssl_ca_certs": str(tls_redis.tls.cert)},
                               StaticAdapter("erp", values={"S1": {"A": 3}}))
    assert cache.fetch(batch("A", ["S1"])) == [3]
    assert cache.fetch(batch("A", ["S1"])) == [3]
    assert [n for n, _ in fake_adapters.CALLS] == ["erp"]
    assert cache.health().ok
    with tls_redis.client() as r:
        assert r.get("atp:S1:A") == b"3"
    with pytest.raises(redis.ConnectionError):  # the port speaks TLS only
        redis.Redis(port=tls_redis.port, socket_timeout=1).ping()


def test_a_rediss_url_refuses_a_certificate_it_cannot_verify(tls_redis, make_redis_adapter):
    unverified = make_redis_adapter({"mode": "source", "url": tls_redis.url}, name="wms")
    with pytest.raises(AdapterError) as err:
        unverified.fetch(batch("A", ["S1"]))
    assert "certificate verify failed" in err.value.message.lower()
    lax = make_redis_adapter({"mode": "source", "url": tls_redis.url, "ssl_cert_reqs": "none"}, name="wms")
    assert lax.fetch(batch("Q", ["S9"])) == [None]


def test_a_cluster_request_reads_keys_on_several_nodes_with_one_round_trip_per_node(
        clean_cluster, make_redis_adapter, round_trips):
    cache = make_redis_adapter({"mode": "cache", "url": clean_cluster.url, "cluster": True, "upstream": "erp"},
                               StaticAdapter("erp", values={loc: {f"P{i}": i for i in range(20)}
                                                           for loc in ("S1", "S2", "DC")}))
    products = [f"P{i}" for i in range(20)]
    expected = [i for i in range(20) for _ in range(3)]
    assert cache.fetch(batch(products, ["S1", "S2", "DC"])) == expected
    keys_per_node = []
    for node in clean_cluster.nodes:
        with node.client() as r:
            keys_per_node.append(r.dbsize())
    assert sum(keys_per_node) == 60 and all(n > 0 for n in keys_per_node)  # spread over all 3
    fake_adapters.CALLS.clear()
    round_trips.reset()
    assert cache.fetch(batch(products, ["S1", "S2", "DC"])) == expected
    assert fake_adapters.CALLS == []
    assert sorted(round_trips.by_port) == sorted(n.port for n in clean_cluster.nodes)
    assert set(round_trips.by_port.values()) == {1}
    assert isinstance(cache.client.get(), RedisCluster) and cache.health().ok


def test_mutual_tls_presents_the_client_certificate_a_server_demands(mtls_redis, make_redis_adapter):
    tls = mtls_redis.tls
    anonymous = make_redis_adapter({"mode": "source", "url": mtls_redis.url,
                                    "ssl_ca_certs": str(tls.cert)}, name="anonymous")
    health = anonymous.health()
    assert not health.ok and "unreachable" in health.detail  # the handshake is refused
    cache = make_redis_adapter({"mode": "cache", "url": mtls_redis.url, "upstream": "erp",
                                "ssl_ca_certs": str(tls.cert), "ssl_certfile": str(tls.cert),
                                "ssl_keyfile": str(tls.key)},
                               StaticAdapter("erp", values={"S1": {"A": 5}}))
    assert cache.fetch(batch(["A"], ["S1"])) == [5]
    assert cache.health().ok
    with mtls_redis.client() as r:
        assert r.get("atp:S1:A") == b"5"


@pytest.mark.parametrize("adapter,key,message", [
    ({"url": "rediss://127.0.0.1:6399/0", "mode": "source", "ssl_certfile": "c.pem"}, "ssl_keyfile",
     "a client certificate needs both"),
    ({"mode": "source", "ssl_certfile": "c.pem", "ssl_keyfile": "k.pem"}, "ssl_certfile",
     "Only with a rediss://"),
    ({"url": "rediss://127.0.0.1:6399/0", "mode": "source", "ssl_certfile": "certs/c.pem",
      "ssl_keyfile": "certs/k.pem"}, "ssl_keyfile", "no such file "),
    ({"mode": "cache"}, "upstream", "Required in mode: cache"),
    ({"mode": "source", "upstream": "erp"}, "upstream", "Not allowed in mode: source"),
    ({"mode": "source", "on_redis_error": "bypass"}, "on_redis_error", "Only for mode: cache"),
    ({"mode": "source", "key": "atp:{sku}"}, "key", "unknown field(s) ['sku']"),
    ({"mode": "source", "key": "atp:{product}"}, "key", "must contain both"),
    ({"mode": "source", "ssl_ca_certs": "ca.pem"}, "ssl_ca_certs", "Only with a rediss://"),
    ({"mode": "source", "ttl": 5}, "ttl", "unknown key"),
    ({"mode": "sorce"}, "mode", "Must be one of"),
    ({"url": "rediss://127.0.0.1:6399/0", "mode": "source", "ssl_ca_certs": "certs/none.pem"},
     "ssl_ca_certs", "no such file "),
    ({"mode": "cache", "upstream": "erp", "match_on": "product_id"}, "match_on",
     "'cache' uses 'product_id' but its upstream 'erp' uses 'external_identifier'; make them equal"),
])
def test_redis_options_are_checked_at_load_with_file_and_key(config_file, adapter, key, message):
    path = config_file({"adapters": [
        {"name": "erp", "type": "static"},
        {"name": "cache", "type": "redis", "url": "redis://127.0.0.1:6399/0", **adapter}]})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(p.startswith(f"{path}: adapters[1].{key}: ") and message in p for p in err.value.problems), \
        err.value.problems


def test_a_missing_redis_server_fails_the_tests_loudly_with_the_install_hint(monkeypatch):
    import shutil

    from tests.conftest import _require_redis
    from tests.redis_server import require
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="redis-server not found: apt-get install redis-server"):
        _require_redis()
    with pytest.raises(RuntimeError, match="apt-get install redis-server"):
        require()


def test_the_holds_warning_ends_with_the_redis_error_so_its_full_stop_ends_the_line(caplog):
    from atp_bridge.holds import HoldStore
    store = HoldStore(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))
    with caplog.at_level("WARNING", logger="atp_bridge.holds"):
        assert store.refresh() is False
    store.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "atp_bridge.holds"]
    assert line.startswith("holds: keeping the 0 last known until Redis answers: could not read "
                           "holds: Error 111 connecting to 127.0.0.1:1.")
    assert line.endswith("Connection refused.")  # redis-py's own full stop, nothing after it
