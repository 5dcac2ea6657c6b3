"""Malformed but authenticated bodies up to max_body_bytes, against a real
``atp-bridge serve``: each is refused quickly with a small envelope (at most
20 details and a count of the rest), and the worker's memory barely moves."""
import time
from pathlib import Path

import pytest

import atp_bridge
from tests.bench.servers import children, status_mb
from tests.conftest import write_yaml
from tests.serve import BridgeProcess

pytestmark = pytest.mark.slow

KEY = "ns-webhook-key-0123456789abcdef"
LIMIT = 5 * 1024 * 1024  # max_body_bytes, the default
SAMPLE_CSV = Path(atp_bridge.__file__).parent / "data" / "sample.csv"
PRODUCT = b'{"product_id":"1000061","external_identifier":"1000061"}'


def just_under_the_limit(prefix: bytes, items, suffix: bytes) -> tuple[bytes, int]:
    """``prefix`` + as many comma-separated ``items`` as fit in LIMIT + ``suffix``."""
    room = LIMIT - len(prefix) - len(suffix) + 1
    parts = []
    for item in items:
        room -= len(item) + 1
        if room < 0:
            break
        parts.append(item)
    return prefix + b",".join(parts) + suffix, len(parts)


def repeat(item: bytes):
    while True:
        yield item


def numbers_as_products():
    body, n = just_under_the_limit(b'{"products":[', repeat(b"1"), b'],"fulfillment_locations":["US01"]}')
    return body, [(f"products.{i}", "Invalid input type.") for i in range(20)], n - 20


def distinct_long_strings_as_products():
    body, n = just_under_the_limit(b'{"products":[', (b'"%060d"' % i for i in range(10**7)),
                                   b'],"fulfillment_locations":["US01"]}')
    return body, [(f"products.{i}", "Invalid input type.") for i in range(20)], n - 20


def empty_locations():
    body, n = just_under_the_limit(b'{"products":[' + PRODUCT + b'],"fulfillment_locations":[',
                                   repeat(b'""'), b"]}")
    expected = [(f"fulfillment_locations.{i}", "Shorter than minimum length 1.") for i in range(20)]
    return body, expected, n - 20


def a_product_with_half_a_million_keys():
    body, n = just_under_the_limit(b'{"products":[{', (b'"k%d":1' % i for i in range(10**7)),
                                   b'}],"fulfillment_locations":["US01"]}')
    assert n > 400_000
    return body, [("products.0.product_id", "Missing data for required field."),
                  ("products.0.external_identifier", "Missing data for required field.")], 0


def one_huge_string():
    body = b'{"products":"' + b"x" * (LIMIT - 60) + b'","fulfillment_locations":["US01"]}'
    return body, [("products", "Not a valid list.")], 0


def a_product_nested_1000_deep():
    body = b'{"products":[' + b"[" * 1000 + b"]" * 1000 + b'],"fulfillment_locations":["US01"]}'
    return body, [("products.0", "Invalid input type.")], 0


def containers(item: bytes):
    body, _ = just_under_the_limit(b'{"products":[', repeat(item), b'],"fulfillment_locations":["US01"]}')
    found = body.count(b"{") + body.count(b"[")
    return body, [("(body)", f"{found} JSON objects and arrays, more than a request within "
                             f"max_pairs=50000 can hold (200064)")], 0


def empty_objects_as_products():  # refused before parsing: parsed, they cost ~160 MB
    return containers(b"{}")


def empty_lists_as_products():
    return containers(b"[]")


SHAPES = [empty_objects_as_products, empty_lists_as_products, numbers_as_products, distinct_long_strings_as_products, empty_locations,
          a_product_with_half_a_million_keys, one_huge_string, a_product_nested_1000_deep]


@pytest.fixture
def served(tmp_path, test_adapter_entry_points):
    config = write_yaml(tmp_path / "atp-bridge.yaml", {
        "auth": {"api_keys": [KEY]}, "adapters": [{"name": "sample", "type": "csv", "path": str(SAMPLE_CSV)}]})
    with BridgeProcess(config, output=tmp_path / "server.log",
                       extra_pythonpath=[test_adapter_entry_points]) as process:
        yield process.wait_ready()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda f: f.__name__)
def test_a_hostile_body_is_refused_fast_with_a_small_envelope_and_little_memory(served, shape):
    body, expected, more = shape()
    assert len(body) <= LIMIT
    worker = children(served.proc.pid)[0]
    rss_before = status_mb(worker)
    started = time.monotonic()
    resp = served.post(body, headers={"Authorization": KEY, "Content-Type": "application/json"})
    elapsed = time.monotonic() - started
    peak_growth = status_mb(worker, "VmHWM") - rss_before
    rss_growth = status_mb(worker) - rss_before

    assert resp.status_code == 400
    err = resp.json()
    assert [(d["field"], d["problem"]) for d in err["details"]] == expected
    assert err.get("more_problems", 0) == more
    assert err["error"] == "bad_request" and err["message"] == f"{expected[0][0]}: {expected[0][1]}"
    assert len(resp.content) < 10_000
    assert elapsed < 5.0  # ~0.1-0.2 s measured; the whole body was 40-60 s before the bound
    assert peak_growth < 100 and rss_growth < 100, (peak_growth, rss_growth)
