"""The redis cache in the bridge and when Redis goes away: bypass, fail, health, recovery.

Redis is really killed (SIGKILL) and restarted on the same port.
"""
import logging
import time

import pytest

from atp_bridge.adapters import redis_conn
from atp_bridge.adapters.base import Batch
from atp_bridge import create_app
from atp_bridge.errors import AdapterError
from tests import fake_adapters
from tests.fake_adapters import StaticAdapter

VALUES = {"S1": {"A": 5, "B": 1}, "DC": {"A": 100, "B": 30}}
BODY = {"products": [{"product_id": "A", "external_identifier": "A"},
                     {"product_id": "B", "external_identifier": "B"}],
        "fulfillment_locations": ["S1", "DC"]}
ANSWER = {("A", "S1"): 5, ("A", "DC"): 100, ("B", "S1"): 1, ("B", "DC"): 30}
LOGGER = "atp_bridge.adapters.redis"


def batch():
    return Batch(["A", "B"], ["S1", "DC"], time.monotonic() + 3)


def erp_calls():
    return [name for name, _ in fake_adapters.CALLS if name == "erp"]


def redis_logs(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.fixture(autouse=True)
def quick_probe(monkeypatch):
    """While Redis is down one request per PROBE_INTERVAL_S retries it; shorten the wait."""
    monkeypatch.setattr(redis_conn, "PROBE_INTERVAL_S", 0.05)


def test_with_redis_killed_the_cache_bypasses_to_the_upstream_logs_once_and_recovers_on_restart(
        own_redis, make_redis_adapter, caplog):
    cache = make_redis_adapter({"mode": "cache", "url": own_redis.url, "upstream": "erp"},
                               StaticAdapter("erp", values=VALUES))
    assert cache.fetch(batch()) == [5, 100, 1, 30]
    own_redis.stop()
    fake_adapters.CALLS.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        answers = []
        for _ in range(3):
            answers.append(cache.fetch(batch()))
            time.sleep(0.06)  # let each request probe Redis again
        assert answers == [[5, 100, 1, 30]] * 3
        assert erp_calls() == ["erp"] * 3 and cache.bypasses == 3
        down = redis_logs(caplog, logging.WARNING)
        assert len(down) == 1 and "bypassing" in down[0] and f":{own_redis.port}" in down[0]

        own_redis.start()  # same port, empty (no persistence)
        time.sleep(0.06)
        fake_adapters.CALLS.clear()
        assert cache.fetch(batch()) == [5, 100, 1, 30]  # cold again: refilled from the upstream
        assert cache.fetch(batch()) == [5, 100, 1, 30]
        assert erp_calls() == ["erp"] and cache.bypasses == 3
        assert len(redis_logs(caplog, logging.WARNING)) == 1
        up = redis_logs(caplog, logging.INFO)
        assert len(up) == 1 and "recovered" in up[0]
    with own_redis.client() as r:
        assert r.get("atp:DC:A") == b"100"


def test_with_redis_down_a_fail_cache_raises_instead_of_asking_the_upstream(own_redis, make_redis_adapter):
    cache = make_redis_adapter({"mode": "cache", "url": own_redis.url, "upstream": "erp",
                                "on_redis_error": "fail"}, StaticAdapter("erp", values=VALUES))
    own_redis.stop()
    with pytest.raises(AdapterError) as err:
        cache.fetch(batch())
    assert err.value.adapter == "cache" and "ConnectionError" in err.value.message
    assert erp_calls() == [] and cache.bypasses == 0


def test_health_pings_redis_caches_the_result_and_says_when_it_is_bypassing(own_redis, make_redis_adapter):
    cache = make_redis_adapter({"mode": "cache", "url": own_redis.url, "upstream": "erp",
                                "health_cache_s": 0.2}, StaticAdapter("erp", values=VALUES))
    healthy = cache.health()
    assert healthy.ok and healthy.detail == "PING ok" and healthy.info["bypassing"] is False
    own_redis.stop()
    assert cache.health() is healthy  # cached for health_cache_s
    time.sleep(0.25)
    down = cache.health()
    assert down.ok and down.info["bypassing"] is True  # still answers, from the upstream
    assert "bypassing the cache, answering from upstream 'erp'" in down.detail
    own_redis.start()
    time.sleep(0.25)
    assert cache.health().ok


def test_source_mode_health_is_not_ok_while_redis_is_down(own_redis, make_redis_adapter):
    source = make_redis_adapter({"mode": "source", "url": own_redis.url, "health_cache_s": 0})
    own_redis.stop()
    down = source.health()
    assert not down.ok and down.info["bypassing"] is False and "unreachable" in down.detail


# -- through the bridge --------------------------------------------------------

def app_config(config_file, url, **cache_opts):
    return config_file({"deadline_ms": 1000, "adapters": [
        {"name": "erp", "type": "static", "values": VALUES},
        {"name": "cache", "type": "redis", "mode": "cache", "url": url, "upstream": "erp", **cache_opts},
    ]})


def post(client):
    resp = client.post("/availabilities", json=BODY)
    assert resp.status_code == 200
    got = {(r["product_id"], r["fulfillment_location"]): r["atp"] for r in resp.get_json()["availabilities"]}
    return got, resp.headers.get("X-ATP-Degraded")


def test_the_bridge_routes_to_the_cache_in_place_of_its_upstream(redis_db, config_file):
    app = create_app(str(app_config(config_file, redis_db.url)))
    bridge = app.extensions["atp_bridge"].bridge
    assert [r.adapter.name for r in bridge.planner.routes(("S1", "DC"))] == ["cache"]
    client = app.test_client()
    assert post(client) == (ANSWER, None)
    assert post(client) == (ANSWER, None)
    assert erp_calls() == ["erp"]  # once, by the cache on the cold request; never routed on its own
    ready = client.get("/readyz")
    assert ready.status_code == 200 and set(ready.get_json()["adapters"]) == {"erp", "cache"}
    bridge.close()


def test_with_redis_killed_a_bypass_cache_keeps_the_bridge_answering_from_the_upstream(own_redis, config_file):
    app = create_app(str(app_config(config_file, own_redis.url)))
    client = app.test_client()
    own_redis.stop()
    assert post(client) == (ANSWER, None)
    ready = client.get("/readyz")
    cache = ready.get_json()["adapters"]["cache"]
    assert ready.status_code == 200 and cache["bypassing"] is True and "unreachable" in cache["detail"]
    app.extensions["atp_bridge"].bridge.close()


def test_with_redis_killed_a_fail_cache_gives_the_bridges_all_zero_answer_until_redis_returns(
        own_redis, config_file):
    app = create_app(str(app_config(config_file, own_redis.url, on_redis_error="fail")))
    client = app.test_client()
    assert post(client) == (ANSWER, None)
    own_redis.stop()
    got, degraded = post(client)
    assert got == dict.fromkeys(ANSWER, 0) and degraded == "error:cache"
    own_redis.start()
    time.sleep(0.06)
    assert post(client) == (ANSWER, None)
    app.extensions["atp_bridge"].bridge.close()


def test_a_cluster_that_is_down_at_startup_is_bypassed_not_fatal(make_redis_adapter):
    cache = make_redis_adapter({"mode": "cache", "url": "redis://127.0.0.1:1/0", "cluster": True,
                                "upstream": "erp"}, StaticAdapter("erp", values=VALUES))
    assert cache.fetch(batch()) == [5, 100, 1, 30]
    assert cache.bypasses == 1 and erp_calls() == ["erp"]
    health = cache.health()
    assert health.ok and health.info["bypassing"] is True and "unreachable" in health.detail


def test_a_cache_and_its_upstream_must_match_on_the_same_product_key(make_redis_adapter):
    from atp_bridge.errors import ConfigError
    with pytest.raises(ConfigError) as err:
        make_redis_adapter({"mode": "cache", "url": "redis://127.0.0.1:1/0", "upstream": "erp"},
                           StaticAdapter("erp", values=VALUES, match_on="product_id"))
    assert "match_on" in str(err.value) and "'product_id'" in str(err.value)


def test_a_cluster_node_killed_mid_run_is_bypassed_in_time_and_the_cache_serves_again_once_it_is_back(
        tmp_path, make_redis_adapter):
    from tests import redis_server
    from tests.conftest import _require_redis
    _require_redis()
    cluster = redis_server.RedisCluster(tmp_path).start()  # its own: a node of it gets killed
    try:
        values = {"S1": {f"P{i}": i for i in range(60)}}  # 60 keys: every node holds some
        products = [f"P{i}" for i in range(60)]
        cache = make_redis_adapter({"mode": "cache", "url": cluster.url, "cluster": True, "upstream": "erp",
                                    "health_cache_s": 0}, StaticAdapter("erp", values=values))

        def ask():
            b = Batch(products, ["S1"], time.monotonic() + 3)
            fake_adapters.CALLS.clear()
            answer = cache.fetch(b)
            assert time.monotonic() < b.deadline  # in time, whatever Redis did
            return answer, erp_calls()

        assert ask() == (list(range(60)), ["erp"])  # cold: filled from the upstream
        assert ask() == (list(range(60)), [])  # warm: Redis only
        cluster.nodes[1].stop()  # SIGKILL one of the three masters
        for _ in range(3):
            assert ask() == (list(range(60)), ["erp"])  # bypassed to the upstream
        health = cache.health()  # ready (it answers from the upstream), and says why
        assert health.ok and health.info["bypassing"] is True and "unreachable" in health.detail
        cluster.nodes[1].start()  # same port and cluster config, no data
        give_up = time.monotonic() + 30
        for node in cluster.nodes:
            with node.client() as c:
                while c.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    assert time.monotonic() < give_up, "the cluster did not recover"
                    time.sleep(0.1)
        answer, _ = ask()  # the restarted node's keys are refilled from the upstream
        assert answer == list(range(60))
        assert ask() == (list(range(60)), [])  # and the cache answers alone again
        health = cache.health()
        assert health.ok and health.info["bypassing"] is False
    finally:
        cluster.stop()
