"""``type: redis``: cache mode (read-through), source mode, and the deadline, against a real redis-server."""
import time

import pytest

from atp_bridge.adapters.base import Batch
from atp_bridge.errors import AdapterError, AdapterTimeout
from tests import fake_adapters
from tests.fake_adapters import FailingAdapter, StaticAdapter
from tests.redis_server import command_calls

VALUES = {"S1": {"A": 5, "B": 1}, "S2": {"A": 2, "B": 0}, "DC": {"A": 100, "B": 30.5}}
PRODUCTS, LOCATIONS = ["A", "B"], ["S1", "S2", "DC"]
EXPECTED = [5, 2, 100, 1, 0, 30.5]  # product-major


def batch(products=PRODUCTS, locations=LOCATIONS, seconds=3.0):
    return Batch(list(products), list(locations), time.monotonic() + seconds)


def upstream_batches():
    return [(list(b.products), list(b.locations)) for name, b in fake_adapters.CALLS if name == "erp"]


@pytest.fixture
def erp():
    return StaticAdapter("erp", values=VALUES)


@pytest.fixture
def cache(redis_db, make_redis_adapter, erp):
    return make_redis_adapter({"mode": "cache", "url": redis_db.url, "upstream": "erp", "ttl_s": 30}, erp)


def test_a_cold_request_reads_once_asks_the_upstream_once_and_writes_back_in_one_pipeline(
        cache, redis_db, round_trips):
    with redis_db.client() as r:
        mget0, set0 = command_calls(r, "mget"), command_calls(r, "set")
        cache.client.get().ping()  # open the pooled connection outside the count
        round_trips.reset()
        assert cache.fetch(batch()) == EXPECTED
        assert round_trips.total == 2  # MGET, then one pipeline of SET EX
        assert command_calls(r, "mget") - mget0 == 1 and command_calls(r, "set") - set0 == 6
    assert upstream_batches() == [(PRODUCTS, LOCATIONS)]


def test_a_warm_request_is_one_redis_round_trip_and_no_upstream_call(cache, redis_db, round_trips):
    cache.fetch(batch())
    fake_adapters.CALLS.clear()
    with redis_db.client() as r:
        mget0, get0 = command_calls(r, "mget"), command_calls(r, "get")
        round_trips.reset()
        assert cache.fetch(batch()) == EXPECTED
        assert round_trips.total == 1
        assert command_calls(r, "mget") - mget0 == 1 and command_calls(r, "get") == get0
    assert upstream_batches() == []


def test_cached_answers_expire_after_ttl_s(cache, redis_db):
    cache.fetch(batch())
    with redis_db.client() as r:
        ttls = [r.pttl(k) for k in r.scan_iter("atp:*")]
        assert sorted(k.decode() for k in r.scan_iter("atp:*")) == sorted(
            f"atp:{loc}:{p}" for p in PRODUCTS for loc in LOCATIONS)
        assert r.get("atp:DC:B") == b"30.5" and r.get("atp:S2:B") == b"0"
    assert len(ttls) == 6 and all(28_000 < t <= 30_000 for t in ttls)


def test_only_the_missing_products_go_to_the_upstream_in_one_batch(cache, redis_db):
    with redis_db.client() as r:
        r.set("atp:S1:A", 50), r.set("atp:S2:A", 20), r.set("atp:DC:A", 1000)
    assert cache.fetch(batch()) == [50, 20, 1000, 1, 0, 30.5]
    assert upstream_batches() == [(["B"], LOCATIONS)]


def test_scattered_misses_are_asked_as_one_grid_and_only_the_misses_are_taken_and_cached(cache, redis_db):
    # misses: (A, S1) and (B, DC): the grid [A, B] x [S1, DC] over-asks (A, DC) and (B, S1)
    with redis_db.client() as r:
        for key, v in {"atp:S2:A": 20, "atp:DC:A": 1000, "atp:S1:B": 10, "atp:S2:B": 9}.items():
            r.set(key, v, ex=500)
        assert cache.fetch(batch()) == [5, 20, 1000, 10, 9, 30.5]
        assert r.get("atp:DC:A") == b"1000" and r.ttl("atp:DC:A") > 400  # the hit was not rewritten
        assert r.get("atp:S1:A") == b"5" and r.ttl("atp:S1:A") <= 30
    assert upstream_batches() == [(["A", "B"], ["S1", "DC"])]


def test_pairs_the_upstream_does_not_know_are_cached_as_unknown_not_as_zero(cache, redis_db):
    assert cache.fetch(batch(["A", "Z"], ["S1"])) == [5, None]
    with redis_db.client() as r:
        assert r.get("atp:S1:Z") == b"" and 0 < r.ttl("atp:S1:Z") <= 30
    fake_adapters.CALLS.clear()
    assert cache.fetch(batch(["A", "Z"], ["S1"])) == [5, None]
    assert upstream_batches() == []


def test_an_upstream_failure_propagates_as_the_upstreams_error_and_nothing_is_cached(
        redis_db, make_redis_adapter):
    cache = make_redis_adapter({"mode": "cache", "url": redis_db.url, "upstream": "erp"},
                               FailingAdapter("erp", mode="raise"))
    with pytest.raises(AdapterError) as err:
        cache.fetch(batch())
    assert err.value.adapter == "erp" and "ERP said no" in err.value.message
    with redis_db.client() as r:
        assert r.dbsize() == 0


def test_the_key_template_and_prefix_name_the_keys(redis_db, make_redis_adapter, erp):
    cache = make_redis_adapter({"mode": "cache", "url": redis_db.url, "upstream": "erp",
                                "key": "stock/{product}@{location}", "prefix": "t1:"}, erp)
    cache.fetch(batch(["A"], ["S1", "DC"]))
    with redis_db.client() as r:
        assert sorted(r.scan_iter("*")) == [b"t1:stock/A@DC", b"t1:stock/A@S1"]


def test_locations_the_upstream_does_not_serve_are_neither_asked_nor_cached(redis_db, make_redis_adapter):
    erp = StaticAdapter("erp", values=VALUES, locations=["S*"])
    cache = make_redis_adapter({"mode": "cache", "url": redis_db.url, "upstream": "erp"}, erp)
    assert cache.fetch(batch(["A"], ["S1", "DC"])) == [5, None]
    assert upstream_batches() == [(["A"], ["S1"])]
    with redis_db.client() as r:
        assert r.exists("atp:DC:A") == 0


def test_a_cached_value_that_is_not_a_number_is_refetched_and_overwritten(cache, redis_db):
    with redis_db.client() as r:
        r.set("atp:S1:A", "garbage")
        assert cache.fetch(batch(["A"], ["S1"])) == [5]
        assert r.get("atp:S1:A") == b"5"


def test_no_redis_call_starts_once_the_deadline_has_passed(cache, round_trips):
    with pytest.raises(AdapterTimeout):
        cache.fetch(batch(seconds=-0.01))
    assert round_trips.total == 0 and upstream_batches() == []


# -- mode: source ------------------------------------------------------------

@pytest.fixture
def source(redis_db, make_redis_adapter):
    return make_redis_adapter({"mode": "source", "url": redis_db.url, "prefix": "wms:"}, name="wms")


def test_source_mode_reads_the_numbers_another_system_writes_in_one_round_trip(source, redis_db, round_trips):
    with redis_db.client() as r:
        r.mset({"wms:atp:S1:A": "7", "wms:atp:DC:A": "12.5", "wms:atp:DC:B": "-3"})
    source.client.get().ping()
    round_trips.reset()
    assert source.fetch(batch(["A", "B"], ["S1", "DC"])) == [7, 12.5, None, -3]
    assert round_trips.total == 1


def test_source_mode_rejects_a_value_that_is_not_a_number_naming_the_key(source, redis_db):
    with redis_db.client() as r:
        r.set("wms:atp:S1:A", "lots")
    with pytest.raises(AdapterError) as err:
        source.fetch(batch(["A"], ["S1"]))
    assert err.value.adapter == "wms" and "'wms:atp:S1:A'" in err.value.message


def test_source_mode_with_redis_down_is_an_adapter_failure(own_redis, make_redis_adapter):
    source = make_redis_adapter({"mode": "source", "url": own_redis.url}, name="wms")
    own_redis.stop()
    with pytest.raises(AdapterError) as err:
        source.fetch(batch())
    assert err.value.adapter == "wms" and "ConnectionError" in err.value.message


def test_an_unset_url_is_one_problem_not_also_a_tls_key_problem(config_file, monkeypatch):
    from atp_bridge.config import load_config
    from atp_bridge.errors import ConfigError

    monkeypatch.delenv("REDIS_URL_NOT_SET", raising=False)
    path = config_file({"adapters": [{"name": "cache", "type": "redis", "mode": "source",
                                      "url": "${REDIS_URL_NOT_SET}", "ssl_cert_reqs": "required"}]})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert len(e.value.problems) == 1 and "REDIS_URL_NOT_SET is not set" in e.value.problems[0]
