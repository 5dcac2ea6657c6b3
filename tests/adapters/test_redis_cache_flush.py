"""``atp-bridge cache flush`` (atp_bridge/cache_cli.py, adapters/redis_conn.unlink_matching)
through click's CliRunner, against a real redis-server and a real cluster.

It lives beside the other Redis tests because it needs their server fixtures.
"""
import pytest
from click.testing import CliRunner

from atp_bridge.adapters.redis_conn import unlink_matching
from atp_bridge.cache_cli import sentence
from atp_bridge.cli import main
from tests.redis_server import command_calls

PAIRS = [(p, loc) for p in ("A", "B", "C") for loc in ("S1", "S2")]


def config(config_file, url, *, cluster=False, prefix=""):
    return str(config_file({"adapters": [
        {"name": "erp", "type": "static"},
        {"name": "cache", "type": "redis", "mode": "cache", "url": url, "upstream": "erp",
         "cluster": cluster, "prefix": prefix},
        {"name": "wms", "type": "redis", "mode": "source", "url": url, "prefix": "wms:"},
    ]}))


def fill(client, prefix=""):
    for p, loc in PAIRS:
        client.set(f"{prefix}atp:{loc}:{p}", 1)
    client.set("wms:atp:S1:A", 9)  # the source adapter's key: never flushed
    client.set("other:key", 1)


def flush(*args):
    return CliRunner().invoke(main, ["cache", "flush", *args])


def remaining(client):
    return sorted(k.decode() for k in client.scan_iter("*"))


def test_flush_drops_every_cached_entry_and_leaves_other_keys(redis_db, config_file):
    path = config(config_file, redis_db.url)
    with redis_db.client() as r:
        fill(r)
        keys0 = command_calls(r, "keys")
        result = flush("--config", path)
        assert result.exit_code == 0, result.output
        assert "dropped 6 key(s) matching 'atp:*:*'" in result.output
        assert remaining(r) == ["other:key", "wms:atp:S1:A"]
        assert command_calls(r, "keys") == keys0 and command_calls(r, "scan") > 0


@pytest.mark.parametrize("args,left", [
    (["--product", "B"], ["atp:S1:B", "atp:S2:B"]),
    (["--location", "S2"], ["atp:S2:A", "atp:S2:B", "atp:S2:C"]),
    (["--location", "S2", "--product", "C", "--adapter", "cache"], ["atp:S2:C"]),
])
def test_flush_narrows_to_a_product_and_or_a_location(redis_db, config_file, args, left):
    path = config(config_file, redis_db.url, prefix="eu:")
    with redis_db.client() as r:
        fill(r, prefix="eu:")
        result = flush("--config", path, *args)
        assert result.exit_code == 0, result.output
        assert f"dropped {len(left)} key(s)" in result.output
        gone = {f"eu:{k}" for k in left}
        assert set(remaining(r)) == {f"eu:atp:{loc}:{p}" for p, loc in PAIRS} - gone | {"other:key", "wms:atp:S1:A"}


def test_flush_refuses_a_source_adapter_and_an_unknown_name(redis_db, config_file):
    path = config(config_file, redis_db.url)
    with redis_db.client() as r:
        fill(r)
        refused = flush("--config", path, "--adapter", "wms")
        unknown = flush("--config", path, "--adapter", "nope")
        assert r.dbsize() == 8
    assert refused.exit_code == 1
    assert one_line(refused.output) == (
        "Error: adapter 'wms' is a Redis source (mode: source): its keys belong to the system "
        f"that writes them, so cache flush never deletes them; the cache adapters in {path} "
        "are 'cache'")
    assert unknown.exit_code == 1 and "no adapter named 'nope'" in unknown.output


def one_line(output):
    return " ".join(output.split())


def test_flush_says_an_adapter_that_is_not_redis_keeps_no_cache_and_names_the_one_in_front(
        config_file):
    path = str(config_file({"adapters": [
        {"name": "erp", "type": "rest", "url": "http://127.0.0.1:1/atp"},
        {"name": "stock", "type": "rest", "url": "http://127.0.0.1:1/stock"},
        {"name": "cache", "type": "redis", "mode": "cache", "url": "redis://127.0.0.1:1/0",
         "upstream": "erp"},
    ]}))
    fronted = flush("--config", path, "--adapter", "erp")
    alone = flush("--config", path, "--adapter", "stock")
    assert fronted.exit_code == alone.exit_code == 1
    assert one_line(fronted.output) == (
        "Error: adapter 'erp' is type: rest, not a Redis adapter: it keeps no cache to flush; "
        "its answers are cached by 'cache': pass --adapter cache")
    assert one_line(alone.output) == (
        "Error: adapter 'stock' is type: rest, not a Redis adapter: it keeps no cache to flush; "
        f"the cache adapters in {path} are 'cache'")
    assert "another system owns" not in fronted.output + alone.output


def test_flush_help_is_plain_text():
    result = CliRunner().invoke(main, ["cache", "flush", "--help"])
    assert result.exit_code == 0
    assert "``" not in result.output
    assert ("Only adapters with type: redis and mode: cache are flushed: the keys of a mode: "
            "source adapter belong to the system that writes them.") in one_line(result.output)


def test_flush_says_which_redis_it_cannot_reach(config_file):
    path = config(config_file, "redis://127.0.0.1:1/0")
    result = flush("--config", path)
    assert result.exit_code == 1
    assert "adapter 'cache': cannot flush Redis at redis://127.0.0.1:1/0" in result.output
    # redis-py's message ends with its own full stop: one full stop between the sentences
    assert "Connection refused. Check that Redis is running" in one_line(result.output)
    assert ".." not in result.output


@pytest.mark.parametrize("error,text", [
    (OSError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
     "OSError: Error 111 connecting to 127.0.0.1:1. Connection refused."),
    (TimeoutError("Timeout reading from socket"), "TimeoutError: Timeout reading from socket."),
    (ConnectionError("  done!  "), "ConnectionError: done!"),
    (ConnectionError(), "ConnectionError."),
])
def test_an_error_becomes_one_sentence_ending_in_one_full_stop(error, text):
    assert sentence(error) == text


def test_unlink_matching_works_in_batches_smaller_than_the_key_count(redis_db):
    with redis_db.client() as r:
        r.mset({f"atp:S{i}:P": i for i in range(1234)})
        r.set("keep", 1)
        unlink0 = command_calls(r, "unlink")
        assert unlink_matching(r, "atp:*:*", batch=500) == 1234
        assert command_calls(r, "unlink") - unlink0 == 3  # 500 + 500 + 234
        assert remaining(r) == ["keep"]


def test_flush_on_a_cluster_scans_every_primary(clean_cluster, config_file):
    path = config(config_file, clean_cluster.url, cluster=True)
    from redis.cluster import RedisCluster
    rc = RedisCluster.from_url(clean_cluster.url)
    try:
        for i in range(30):
            rc.set(f"atp:S1:P{i}", i)
            rc.set(f"keep:{i}", i)
        per_node = []
        for node in clean_cluster.nodes:
            with node.client() as r:
                per_node.append(sum(1 for _ in r.scan_iter("atp:*")))
        assert all(n > 0 for n in per_node)  # the cached entries really are spread out
        result = flush("--config", path, "--location", "S1")
        assert result.exit_code == 0, result.output
        assert "dropped 30 key(s)" in result.output
        assert sum(1 for _ in rc.scan_iter("atp:*")) == 0
        assert sum(1 for _ in rc.scan_iter("keep:*")) == 30
    finally:
        rc.close()
