"""A real HTTP server on loopback standing in for a retailer's ERP.

Speaks the REST adapter's default wire format out of the box and answers from
``stock`` ({(product, location): atp}); ``respond`` swaps in any other format.
Switches inject the faults a real ERP has: ``mode`` (``ok``, ``slow``,
``hang``, ``error`` (500), ``echo`` (500 quoting the request target as sent
and its decoded query, after ``echo_prefix``), ``garbage``, ``drop``),
``fail_next(n, status)`` (503-then-ok), required credentials
(``expect_header``) answering 401, and an OAuth2 token endpoint at
``/token``. ``log`` records every request. ``respond`` returns ``(status,
body)`` or ``(status, body, headers)``.

A client that hangs up mid-exchange (connection reset, broken pipe, a TLS
handshake it refused) is normal here and stays quiet; any other exception in a
handler is a bug of the stand-in: it is printed as before and recorded in
``handler_errors``, so a test can fail on it (``hang_ups`` counts the quiet ones).

Hostile answers: ``trickle_headers`` and ``trickle_body`` send one byte every
``trickle_s`` (the headers, or the body after complete headers), stopping as
soon as the client hangs up; ``flood`` sends a body of ``flood_bytes`` (with a
Content-Length if ``flood_length``, else ended by closing the connection; a
gzip bomb if ``flood_gzip``). ``open_connections`` counts the client connections
open right now. These modes answer the paths in ``hostile_paths`` (``/atp``;
add ``/token`` or ``/health`` to make those hostile too).

Use it as a context manager or through the ``erp`` fixture in the tests.
"""
from __future__ import annotations

import base64
import itertools
import select
import socket
import ssl
import sys
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

HOSTILE_MODES = ("trickle_headers", "trickle_body", "flood")  # written by the handler itself


@dataclass
class Seen:
    """One request as the ERP received it."""

    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    client_port: int = 0
    at: float = field(default_factory=time.monotonic)
    target: str = ""  # the request target as sent: path and raw query string

    def json(self):
        return orjson.loads(self.body)

    def form(self) -> dict:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


def client_hung_up(exc: BaseException | None) -> bool:
    """True for what a client that went away causes: a reset, a broken pipe, a
    timeout, or a TLS handshake it ended (an alert: it refused our certificate)."""
    if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLEOFError)):
        return True
    return isinstance(exc, ssl.SSLError) and "ALERT" in str(getattr(exc, "reason", "") or "")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a burst of connections is accepted, not dropped at SYN

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handler_errors: list[str] = []  # tracebacks of the stand-in's own bugs
        self.hang_ups = 0                     # exchanges a client ended early, quietly

    def handle_error(self, request, client_address):
        """socketserver prints every handler exception to stderr, hang-ups
        included (a stray "Exception occurred during processing of request"
        line in the test run): stay quiet for those, record the rest."""
        exc = sys.exc_info()[1]
        if client_hung_up(exc):
            self.hang_ups += 1
            return
        self.handler_errors.append(traceback.format_exc())
        super().handle_error(request, client_address)


def default_respond(erp: "FakeErp", seen: Seen):
    """The default wire format: items in, items out; unknown pairs left out."""
    items = seen.json()["items"]
    return 200, {"items": [{"product": i["product"], "location": i["location"],
                            "atp": erp.stock[(i["product"], i["location"])]}
                           for i in items if (i["product"], i["location"]) in erp.stock]}


class FakeErp:
    """The ERP stand-in; see the module docstring."""

    def __init__(self, ssl_context=None):
        self.stock: dict[tuple[str, str], object] = {}
        self.respond = default_respond
        self.mode = "ok"
        self.slow_s = 0.0
        self.error_body = b'{"error": "internal"}'
        self.echo_prefix = "internal error; request was: "  # mode "echo"
        self.expect_header: tuple[str, str] | None = None   # else 401
        self.health_status = 200
        self.log: list[Seen] = []
        self.client = ("client-1", "client-secret-1")        # OAuth2 client credentials
        self.token_lifetime_s = 3600
        self.token_status = 200
        self.token_delay_s = 0.0
        self.in_flight = 0
        self.open_connections = 0                            # client connections open now
        self.trickle_s = 1.0
        self.hostile_paths = {"/atp"}
        self.flood_bytes = 0
        self.flood_length = True
        self.flood_gzip = False
        self.max_in_flight = 0                               # peak concurrent ATP calls
        self.valid_tokens: set[str] = set()
        self._token_ids = itertools.count(1)
        self._fail: list[int] = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        if ssl_context is not None:  # https: handshake per connection, in the handler thread
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True,
                                                          do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> "FakeErp":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let hanging handlers go
        self._server.shutdown()
        self._server.server_close()

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` calls to the ATP endpoint answer ``status``."""
        self._fail = [status] * n

    @property
    def handler_errors(self) -> list[str]:
        """Tracebacks of exceptions in the handler other than a client hanging up."""
        return self._server.handler_errors

    @property
    def hang_ups(self) -> int:
        """How many exchanges ended quietly because the client hung up."""
        return self._server.hang_ups

    def requests(self, path: str = "/atp") -> list[Seen]:
        """Logged requests to ``path`` (query string excluded)."""
        return [s for s in list(self.log) if s.path == path]

    def revoke_tokens(self) -> None:
        """Every issued token stops working (as if it expired early)."""
        self.valid_tokens.clear()

    # -- handling -----------------------------------------------------------

    def handle(self, seen: Seen):
        """(status, body dict or bytes), a mode name that the handler writes
        itself (trickle, flood), or None to drop the connection."""
        if self.mode in HOSTILE_MODES and seen.path in self.hostile_paths:
            return self.mode
        if seen.path == "/token":
            return self._token(seen)
        if seen.path == "/health":
            return self.health_status, {"status": "ok" if self.health_status == 200 else "down"}
        if self.expect_header is not None:
            name, value = self.expect_header
            if seen.headers.get(name.lower()) != value:
                return 401, {"error": "unauthorized"}
        auth = seen.headers.get("authorization", "")
        if auth.startswith("Bearer tok-") and auth[7:] not in self.valid_tokens:
            return 401, {"error": "invalid_token"}
        with self._lock:
            if self._fail:
                return self._fail.pop(), b"upstream busy"
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._atp(seen)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _atp(self, seen: Seen):
        mode = self.mode
        if mode == "hang":
            self._release.wait(30)
            return None
        if mode == "slow":
            time.sleep(self.slow_s)
        if mode == "error":
            return 500, self.error_body
        if mode == "echo":  # a careless ERP that quotes the request in its error page
            return 500, (f"{self.echo_prefix}{seen.method} {seen.target} "
                         f"query={orjson.dumps(seen.query).decode()}").encode()
        if mode == "garbage":
            return 200, b"<html>Service temporarily unavailable</html>"
        if mode == "drop":
            return None
        return self.respond(self, seen)

    def _token(self, seen: Seen):
        form = seen.form()
        client = (form.get("client_id"), form.get("client_secret"))
        basic = seen.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client = tuple(base64.b64decode(basic[6:]).decode().split(":", 1))
        if form.get("grant_type") != "client_credentials" or client != self.client:
            return 401, {"error": "invalid_client"}
        if self.token_status != 200:
            return self.token_status, {"error": "temporarily_unavailable"}
        time.sleep(self.token_delay_s)
        token = f"tok-{next(self._token_ids)}"
        self.valid_tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer",
                     "expires_in": self.token_lifetime_s, "scope": form.get("scope", "")}


_ITEM = b'{"product":"P%07d","location":"S1","atp":1},'


def flood_body(size: int, padded: bool = False):
    """Chunks of a JSON items answer of about ``size`` bytes: distinct items, or
    (``padded``) one item after ``size`` blanks, which gzip shrinks ~1000 times."""
    sent, i = 0, 0
    yield b'{"items":['
    while sent < size:
        chunk = b" " * 65536 if padded else b"".join(_ITEM % (i + k) for k in range(1000))
        i += 1000
        yield chunk
        sent += len(chunk)
    yield b'{"product":"last","location":"S1","atp":1}]}'


def gzipped(chunks):
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    for chunk in chunks:
        yield z.compress(chunk)
    yield z.flush()


def _handler(erp: FakeErp):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so connection pooling is real

        def log_message(self, *args):  # quiet
            pass

        def setup(self):
            super().setup()
            with erp._lock:
                erp.open_connections += 1

        def finish(self):
            try:
                super().finish()
            finally:
                with erp._lock:
                    erp.open_connections -= 1

        def _client_gone(self, wait_s: float) -> bool:
            """Wait up to ``wait_s``; True as soon as the client closed its end."""
            readable, _, _ = select.select([self.connection], [], [], wait_s)
            if not readable:
                return False
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _trickle(self, data: bytes) -> None:
            self.close_connection = True
            for i in range(len(data)):
                if self._client_gone(erp.trickle_s):
                    return
                try:
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                except OSError:
                    return

        def _hostile(self, mode: str) -> None:
            body = orjson.dumps({"items": [], "access_token": "tok-trickled"})
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            if mode == "trickle_headers":
                self.wfile.write(head[:17])  # the status line, then the headers trickle
                self._trickle(head[17:] + body)
            elif mode == "trickle_body":
                self.wfile.write(head)
                self._trickle(body)
            else:
                self._flood()

        def _flood(self) -> None:
            chunks = flood_body(erp.flood_bytes, padded=erp.flood_gzip)
            headers = ["HTTP/1.1 200 OK", "Content-Type: application/json"]
            if erp.flood_gzip:  # a gzip bomb
                chunks = gzipped(chunks)
                headers.append("Content-Encoding: gzip")
            if erp.flood_length:
                chunks = list(chunks)
                headers.append(f"Content-Length: {sum(map(len, chunks))}")
            else:  # the end of the body is the end of the connection
                headers.append("Connection: close")
                self.close_connection = True
            try:
                self.wfile.write(("\r\n".join(headers) + "\r\n\r\n").encode())
                for chunk in chunks:
                    self.wfile.write(chunk)
            except OSError:  # the client gave up
                self.close_connection = True

        def _serve(self):
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(self.command, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                        {k.lower(): v for k, v in self.headers.items()}, body, self.client_address[1],
                        target=self.path)
            erp.log.append(seen)
            answer = erp.handle(seen)
            if answer is None:  # drop: close without a status line
                self.close_connection = True
                return
            if isinstance(answer, str):
                self._hostile(answer)
                return
            status, payload, *extra = answer  # (status, body) or (status, body, headers)
            data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

    return Handler
