"""Item 7: the error pages gunicorn writes itself are our JSON envelope.

Protocol errors never reach Flask: gunicorn answers them. Its pages were
HTML; ``atp_bridge.worker.Worker`` makes them ``{"error", "message",
"details"}`` with gunicorn's own status line. A doubled slash under base_path
is a 404, not a Werkzeug 308 whose Location comes from the Host header.
"""
import orjson
import pytest

from tests.hostile.conftest import AUTH, BODY, exchange, split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bridge(stock_bridge):
    return stock_bridge


HEAD = b"POST /availabilities HTTP/1.1\r\nHost: bridge\r\n" + AUTH


@pytest.mark.parametrize("name, request_bytes, status, code", [
    ("Content-Length and Transfer-Encoding together",
     HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"),
    ("a Content-Length that is not a number", HEAD + b"Content-Length: abc\r\n\r\n", 400, "bad_request"),
    ("a NUL in a header value", HEAD + b"X-Note: a\x00b\r\nContent-Length: 0\r\n\r\n", 400, "bad_request"),
    ("a 10,000-character URL", b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: bridge\r\n\r\n",
     414, "uri_too_long"),
    ("too many header fields", b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n" +
     b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200)) + b"\r\n",
     431, "request_header_fields_too_large"),
    ("a request line that is not HTTP", b"HELLO\r\n\r\n", 400, "bad_request"),
])
def test_a_protocol_error_answered_by_gunicorn_is_a_json_envelope(bridge, name, request_bytes, status, code):
    answer, _ = exchange(bridge.port, request_bytes)
    got_status, headers, body = split(answer)
    assert (got_status, headers["content-type"]) == (status, "application/json"), answer[:300]
    doc = orjson.loads(body)
    assert set(doc) == {"error", "message", "details"} and doc["error"] == code
    assert 0 < len(doc["message"]) <= 300  # gunicorn quotes the request: bounded
    assert b"<html>" not in answer


def test_a_doubled_slash_under_base_path_is_a_404_without_a_redirect_from_host(bridge):
    answer, _ = exchange(bridge.port, b"POST /newstore_api/v0//availabilities HTTP/1.1\r\n"
                         b"Host: evil.example\r\nConnection: close\r\n" + AUTH +
                         b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
    status, headers, body = split(answer)
    assert (status, orjson.loads(body)["error"]) == (404, "not_found")
    assert "location" not in headers and b"evil.example" not in answer
