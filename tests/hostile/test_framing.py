"""Item 6: HTTP framing errors are 4xx JSON envelopes, never a 5xx or a truncated read.

Raw sockets against a real ``atp-bridge serve``: a broken chunked body, a
chunked body past max_body_bytes, a Content-Length larger than the body (the
client stops sending, or keeps the connection open and sends no more), and a
body trickling in past the deadline. Each connection is closed after the
answer (its unread bytes are not a request), and the server keeps serving.
"""
import socket
import time

import orjson
import pytest

from tests.conftest import write_yaml
from tests.hostile.conftest import BODY, KEY, exchange, post_head, split
from tests.serve import BridgeProcess

pytestmark = pytest.mark.slow

DEADLINE_MS = 1500
LIMIT = 4096
CHUNKED = b"Transfer-Encoding: chunked\r\n"


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("framing")
    config = write_yaml(tmp / "bridge.yaml", {
        "deadline_ms": DEADLINE_MS, "max_body_bytes": LIMIT, "auth": {"api_keys": [KEY]},
        "adapters": [{"name": "stock", "type": "csv", "path": "stock.csv"}]})
    (tmp / "stock.csv").write_text("product,location,atp\n1000061,US01,4\n")
    log = tmp / "bridge.log"
    with BridgeProcess(config, output=log) as served:
        served.log = log
        yield served.wait_ready()


def envelope(answer: bytes) -> tuple[int, str, dict]:
    status, headers, body = split(answer)
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    return status, orjson.loads(body)["error"], orjson.loads(body)


def still_serving(bridge) -> int:
    answer, _ = exchange(bridge.port, post_head("/availabilities", b"Connection: close\r\n") + BODY)
    status, _, body = split(answer)
    assert orjson.loads(body)["availabilities"][0]["atp"] == 4
    return status


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_broken_chunk_size_is_a_400_without_a_traceback(bridge):
    answer, _ = exchange(bridge.port, post_head("/availabilities", CHUNKED, length=None) + b"zz\r\nabc")
    status, code, body = envelope(answer)
    assert (status, code) == (400, "bad_framing")
    assert "Invalid chunk size" in body["message"]
    assert still_serving(bridge) == 200
    assert "Traceback" not in bridge.log.read_text()


def test_a_chunked_body_past_max_body_bytes_is_a_413_not_a_cut_body(bridge):
    # the first chunk alone is valid JSON: a cut read would have answered 200
    body = chunk(BODY + b" " * 100) + chunk(b" " * LIMIT) + b"0\r\n\r\n"
    answer, _ = exchange(bridge.port, post_head("/availabilities", CHUNKED, length=None) + body)
    status, code, envelope_ = envelope(answer)
    assert (status, code) == (413, "body_too_large")
    assert envelope_["message"] == f"request body is larger than max_body_bytes={LIMIT}"


def test_a_chunked_body_within_the_limit_is_served(bridge):
    body = chunk(BODY[:10]) + chunk(BODY[10:]) + b"0\r\n\r\n"
    answer, _ = exchange(bridge.port, post_head("/availabilities", CHUNKED, b"Connection: close\r\n",
                                                length=None) + body)
    status, _, raw = split(answer)
    assert status == 200 and orjson.loads(raw)["availabilities"][0]["atp"] == 4


def test_a_content_length_larger_than_the_body_is_a_400_when_the_client_stops_sending(bridge):
    answer, _ = exchange(bridge.port, post_head("/availabilities", length=len(BODY) + 50) + BODY,
                         half_close=True)
    status, code, body = envelope(answer)
    assert (status, code) == (400, "incomplete_body")
    assert body["details"] == [{"field": "(body)",
                                "problem": f"body has {len(BODY)} bytes, Content-Length says {len(BODY) + 50}"}]


def test_a_body_that_never_completes_is_a_408_at_the_deadline(bridge):
    answer, took = exchange(bridge.port, post_head("/availabilities", length=len(BODY) + 50) + BODY,
                            wait=10)
    status, code, _ = envelope(answer)
    assert (status, code) == (408, "body_timeout")
    assert took < (DEADLINE_MS + 250) / 1000 + 0.5  # + the error page's brief linger


def test_a_body_trickling_a_byte_at_a_time_is_cut_off_at_the_deadline(bridge):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", bridge.port)) as s:
        s.sendall(post_head("/availabilities"))
        s.settimeout(0.3)
        answer = b""
        for byte in BODY:  # a byte every 0.3 s: ~30 s for the whole body
            try:
                s.send(bytes([byte]))
                answer += s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if answer:
                break
        s.settimeout(2.0)
        try:  # the rest of the answer (its body may come in a segment of its own), to the close
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    status, code, _ = envelope(answer)
    assert (status, code) == (408, "body_timeout")
    assert time.monotonic() - started < (DEADLINE_MS + 250) / 1000 + 0.5
