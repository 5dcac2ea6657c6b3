"""Fixtures for the adapter tests: a live ERP stand-in, REST and Redis adapter factories."""
from __future__ import annotations

import socket
import time

import pytest

from atp_bridge.adapters.base import Batch
from atp_bridge.adapters.rest import RestAdapter
from atp_bridge.adapters.rest_options import RestOptionsSchema
from atp_bridge.config_types import AdapterSpec
from tests.erp_server import FakeErp


@pytest.fixture
def erp():
    """A real HTTP server on a free loopback port, stopped after the test."""
    with FakeErp() as server:
        yield server


@pytest.fixture
def rest(erp):
    """``rest(url=..., **options)`` -> a RestAdapter loaded through its schema,
    closed after the test. ``url`` defaults to the ERP's ``/atp``."""
    made = []

    def make(name="erp", **options):
        options.setdefault("url", f"{erp.url}/atp")
        spec = AdapterSpec(name=name, type="rest", options=RestOptionsSchema().load(options))
        adapter = RestAdapter.from_config(spec)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


def batch(products, locations, seconds=5.0) -> Batch:
    return Batch(list(products), list(locations), time.monotonic() + seconds)


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def make_redis_adapter():
    """``make_redis_adapter(options, upstream=None, **common)`` -> a RedisAdapter
    built the way the bridge builds it (schema, then ``from_config``); closed at teardown."""
    from atp_bridge.adapters.redis_cache import RedisAdapter, RedisOptionsSchema
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
