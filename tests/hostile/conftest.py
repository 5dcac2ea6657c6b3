"""Shared parts of the hostile-client tests: raw sockets against a real
``atp-bridge serve``, and an ERP stand-in on loopback."""
from __future__ import annotations

import socket
import time

import orjson
import pytest

from tests.conftest import write_yaml
from tests.erp_server import FakeErp
from tests.serve import BridgeProcess

KEY = "ns-webhook-key-0123456789abcdef"
BODY = orjson.dumps({"products": [{"product_id": "p-1", "external_identifier": "1000061"}],
                     "fulfillment_locations": ["US01"]})
AUTH = f"Authorization: {KEY}\r\n".encode()


def post_head(path: str = "/availabilities", *extra: bytes, length: int | None = len(BODY)) -> bytes:
    """The head of a webhook POST with the key; ``extra`` header lines end in CRLF."""
    cl = b"" if length is None else b"Content-Length: %d\r\n" % length
    return b"POST %s HTTP/1.1\r\nHost: bridge\r\n%s%s%s\r\n" % (path.encode(), AUTH, cl, b"".join(extra))


def exchange(port: int, data: bytes, *, wait: float = 5.0, half_close: bool = False) -> tuple[bytes, float]:
    """Send ``data`` on a new connection, read until the server closes it (or
    ``wait`` passes); return what came back and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(wait)
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return out, time.monotonic() - started


def split(answer: bytes) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
def erp():
    """A real HTTP server on a free loopback port, stopped after the test."""
    with FakeErp() as server:
        yield server


@pytest.fixture(scope="module")
def stock_bridge(tmp_path_factory):
    """A real ``atp-bridge serve`` (1 worker) with the API key and one CSV
    holding ``1000061`` at ``US01`` = 4; its output goes to ``.log``."""
    tmp = tmp_path_factory.mktemp("bridge")
    config = write_yaml(tmp / "bridge.yaml", {
        "auth": {"api_keys": [KEY]},
        "adapters": [{"name": "stock", "type": "csv", "path": "stock.csv"}]})
    (tmp / "stock.csv").write_text("product,location,atp\n1000061,US01,4\n")
    with BridgeProcess(config, output=tmp / "bridge.log") as served:
        yield served.wait_ready()
