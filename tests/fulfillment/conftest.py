"""Fixtures: the emulator served over real HTTP on a free loopback port."""
from __future__ import annotations

import threading
from typing import Iterator

import pytest
import requests
from werkzeug.serving import make_server

from atp_bridge.fulfillment.client import FulfillmentClient
from atp_bridge.fulfillment.emulator import create_emulator_app

#: The spec's own example order (same for cancel, reject and ship).
SPEC_EXAMPLE = [("product1", 20.0), ("product1", 10.0), ("product2", 10.0), ("product2", 10.0)]
TOKEN = "test-token"


class LoopbackServer:
    """A WSGI app on 127.0.0.1:<free port>, served by a background thread."""

    def __init__(self, app):
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator:
    """Start any WSGI app on loopback; stopped at teardown."""
    servers: list[LoopbackServer] = []

    def _serve(app) -> str:
        servers.append(LoopbackServer(app))
        return servers[-1].url

    yield _serve
    for server in servers:
        server.stop()


@pytest.fixture
def emulator_url(serve) -> str:
    """A fresh emulator (seed 7, any token) per test."""
    return serve(create_emulator_app(seed=7))


@pytest.fixture
def client(emulator_url) -> Iterator[FulfillmentClient]:
    with FulfillmentClient(emulator_url, TOKEN, backoff=0.01) as c:
        yield c


@pytest.fixture
def make_request(emulator_url):
    """Create a fulfillment request in the emulator from ``(product_id, price)`` pairs."""
    def _make(items=SPEC_EXAMPLE, uuid: str | None = None) -> dict:
        body = {"items": [{"product_id": p, "price": price} for p, price in items]}
        if uuid:
            body["uuid"] = uuid
        resp = requests.post(f"{emulator_url}/_emulator/fulfillment_requests", json=body,
                             timeout=5)
        assert resp.status_code == 201, resp.text
        return resp.json()
    return _make


@pytest.fixture
def item_states(emulator_url):
    """``[(product_id, price, status), ...]`` of a request, in creation order."""
    def _states(uuid: str) -> list[tuple[str, float, str]]:
        resp = requests.get(f"{emulator_url}/_emulator/fulfillment_requests/{uuid}", timeout=5)
        assert resp.status_code == 200, resp.text
        return [(i["product_id"], i["price"], i["status"]) for i in resp.json()["items"]]
    return _states


@pytest.fixture(scope="module")
def start_emulator(tmp_path_factory):
    """``start_emulator(*args)`` -> a running :class:`EmulatorProcess`; all are
    stopped when the module's tests are done."""
    from tests.fulfillment.processes import EmulatorProcess

    log_dir = tmp_path_factory.mktemp("emulator")
    started = []

    def _start(*args: str, env: dict | None = None):
        started.append(EmulatorProcess(*args, log_dir=log_dir, env=env))
        return started[-1]

    yield _start
    for proc in started:
        proc.stop()
