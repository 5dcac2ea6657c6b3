"""One HTTP call to the ERP, bounded in total time and in body size.

requests' ``timeout`` is per socket read: an ERP trickling a byte a second never
trips it, and ``resp.content`` takes a body of any size. :func:`send` gives a
call one budget for connect, headers and body, and reads the body in chunks up
to ``max_bytes`` after gzip/deflate decoding (urllib3 >= 2.6 bounds each chunk).

One watchdog thread per process holds the calls in flight; the connections of
:class:`BudgetAdapter` tell it which one a call uses, and it shuts that socket
down at the end of the budget, which wakes the blocked read at once. The same
code works under gevent (``threading`` and ``socket`` patched: the watchdog is
a greenlet, and a gevent socket's ``shutdown`` cancels the waiting read). A cut
call's connection is closed, never pooled again.
"""
from __future__ import annotations

import os
import socket
import threading
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from atp_bridge import tracing

CHUNK = 64 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # the default of max_response_bytes


class BudgetExceeded(requests.Timeout):
    """The call was not complete within its budget; ``part``: headers or body."""

    def __init__(self, part: str, budget_s: float):
        answer = "no answer" if part == "headers" else "incomplete answer"
        super().__init__(f"{answer}: {part} not complete within {budget_s * 1000:.0f} ms")


class TooLarge(requests.RequestException):
    """The answer's body is larger than ``max_bytes``."""

    def __init__(self, how: str, max_bytes: int):
        super().__init__(f"answer body {how} max_response_bytes={max_bytes}")


class _Call:
    __slots__ = ("ends", "conn", "expired")

    def __init__(self, ends: float):
        self.ends, self.conn, self.expired = ends, None, False


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):  # no socket yet, or closed already
        pass


class _Watchdog:
    """The calls in flight in this process; cuts each at its end time."""

    def __init__(self):
        self.current = threading.local()  # the call of this thread (greenlet under gevent)
        self._calls: set[_Call] = set()
        self._lock = threading.Condition()
        self._thread = None

    def arm(self, budget_s: float) -> _Call:
        call = self.current.call = _Call(time.monotonic() + budget_s)
        with self._lock:
            self._calls.add(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="erp-watchdog", daemon=True)
                self._thread.start()
            self._lock.notify()
        return call

    def attach(self, conn) -> None:
        """``conn`` now serves this thread's call (if any)."""
        call = getattr(self.current, "call", None)
        with self._lock:  # a pooled connection changes hands: expiry must see its current owner
            conn.watched_by = call
            if call is not None:
                call.conn = conn

    def disarm(self, call: _Call) -> None:
        self.current.call = None
        with self._lock:
            self._calls.discard(call)

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                for call in [c for c in self._calls if c.ends <= now]:
                    self._calls.discard(call)
                    call.expired = True  # before reading conn.sock: see _Watched.connect
                    if call.conn is not None and call.conn.watched_by is call:
                        _shut(call.conn.sock)
                ends = min((c.ends for c in self._calls), default=now + 60.0)
                self._lock.wait(ends - now)


_watchdogs: dict[int, _Watchdog] = {}


def _watchdog() -> _Watchdog:
    # one per process, made on first use: after a fork, and after gevent patched threading
    pid = os.getpid()
    dog = _watchdogs.get(pid)
    return dog if dog is not None else _watchdogs.setdefault(pid, _Watchdog())


class _Watched:
    """Connection mixin: the watchdog learns which call uses the connection."""

    watched_by = None

    def request(self, *args, **kwargs):
        _watchdog().attach(self)
        return super().request(*args, **kwargs)

    def connect(self):
        super().connect()
        call = self.watched_by
        if call is not None and call.expired:  # expired while connecting, before a socket existed
            _shut(self.sock)


class _Pool(HTTPConnectionPool):
    ConnectionCls = type("WatchedHTTPConnection", (_Watched, HTTPConnection), {})


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = type("WatchedHTTPSConnection", (_Watched, HTTPSConnection), {})


class BudgetAdapter(HTTPAdapter):
    """requests' HTTPAdapter whose connections :func:`send` can cut."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


def send(session: requests.Session, method: str, url: str, *, budget_s: float,
         max_bytes: int, **kwargs) -> tuple[int, bytes, dict]:
    """``(status, body, headers)`` of one call that ends within ``budget_s`` in total.

    Raises :class:`BudgetExceeded` past the budget, :class:`TooLarge` for a
    body over ``max_bytes`` (by Content-Length or as read), requests' own
    exceptions otherwise. ``session`` must mount :class:`BudgetAdapter`. With
    tracing on, the call is a span and sends the trace context (``traceparent``).
    """
    if tracing.tracer is not None:
        return tracing.http_call(_send, session, method, url, budget_s=budget_s, max_bytes=max_bytes,
                                 **kwargs)
    return _send(session, method, url, budget_s=budget_s, max_bytes=max_bytes, **kwargs)


def _send(session: requests.Session, method: str, url: str, *, budget_s: float,
          max_bytes: int, **kwargs) -> tuple[int, bytes, dict]:
    dog = _watchdog()
    call, part = dog.arm(budget_s), "headers"
    try:
        resp = session.request(method, url, stream=True, timeout=(budget_s, budget_s), **kwargs)
        with resp:  # closes the connection unless the whole body was read
            if call.expired:  # a plain socket cut mid-headers reads as their end
                raise BudgetExceeded(part, budget_s)
            part, length = "body", resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise TooLarge(f"of {int(length)} bytes (Content-Length) is over", max_bytes)
            body, size = [], 0
            for chunk in resp.iter_content(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge("grew past", max_bytes)
                body.append(chunk)
            if call.expired:  # a body without length, cut by the watchdog, looks complete
                raise BudgetExceeded(part, budget_s)
            return resp.status_code, b"".join(body), resp.headers
    except (BudgetExceeded, TooLarge, requests.ConnectTimeout):
        raise
    except requests.RequestException:
        if call.expired:  # the watchdog cut it: whatever broke, the budget was the cause
            raise BudgetExceeded(part, budget_s) from None
        raise
    finally:
        dog.disarm(call)
