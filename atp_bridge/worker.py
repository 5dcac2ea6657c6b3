"""The gunicorn worker ``atp-bridge serve`` runs: gevent, with JSON error pages.

Why gevent (measured, docs/benchmarks.md): under gunicorn's gthread worker a
new connection takes a thread until it has sent its whole request, so eight
idle sockets delayed a real request by ~5 s, 200 idle plus 50 slowloris
connections made normal clients time out, and a request queued behind busy
threads lost its deadline before the view started. A gevent worker reads every
connection in its own greenlet: an idle or trickling client costs one greenlet
and a few KB, never a turn of anyone else's, and a request starts the moment its
headers are in (``worker_connections`` per worker, default 1000). It also served
more requests per second than gthread on the same benchmark.

What this class adds to gunicorn's ``GeventWorker``: the error pages gunicorn
writes itself (malformed request line or headers, 414, 431, a bad chunked
body, an application crash before the response started) are the service's
JSON envelope (``{"error", "message", "details"}``) instead of HTML, with the
same status line. Cases where gunicorn closes the connection without writing
anything (a client gone, a TLS handshake failing) have no body to choose.

And on SIGTERM it closes the connections that wait idle for their next
request (a load balancer's kept-alive ones): gunicorn's gevent worker would
otherwise count them as busy and wait the whole ``graceful_timeout`` before
exiting. Requests in flight still finish (their connection closes after the
answer), as under gthread.
"""
from __future__ import annotations

import socket

import gevent
import orjson
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from atp_bridge.timeouts import CLOSE_CONNECTION

__all__ = ["Worker", "write_json_error"]

MESSAGE_LIMIT = 300  # gunicorn's messages quote the offending request line or header
LINGER_S = 0.5  # how long an error page waits for the client to stop sending


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, writing the JSON envelope instead of HTML."""
    if status_int >= 500:
        mesg = "internal error; see the server log"
    message = (mesg or reason)[:MESSAGE_LIMIT]
    body = orjson.dumps({"error": reason.lower().replace(" ", "_"), "message": message,
                         "details": []})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)
    _linger(sock)


def _linger(sock, seconds: float = LINGER_S, limit: int = 256 * 1024) -> None:
    """Close the sending side and read what the client still sends, briefly:
    closing with unread input makes the kernel answer a reset, and the client
    loses the error page it has not read yet (a 10,000-character URL, say)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        with gevent.Timeout(seconds, False):
            while limit > 0 and (data := sock.recv(65536)):
                limit -= len(data)
    except OSError:
        pass


class _AwaitingRequest:
    """``timeout_ctx`` of :class:`Worker`: gunicorn reads a connection's next request
    inside it. Marks the connection idle meanwhile, bounded by ``keepalive`` as in
    gunicorn's own worker; refuses to wait once the worker is stopping."""

    def __init__(self, worker: "Worker"):
        self.worker = worker
        self.timeout = gevent.Timeout(worker.cfg.keepalive, False)

    def __enter__(self):
        if not self.worker.alive:
            raise StopIteration("worker stopping")  # gunicorn closes the connection quietly
        self.worker.idle.add(gevent.getcurrent())
        return self.timeout.__enter__()

    def __exit__(self, *exc):
        self.worker.idle.discard(gevent.getcurrent())
        return self.timeout.__exit__(*exc)


class Worker(GeventWorker):
    """gunicorn's gevent worker with JSON error pages and a prompt SIGTERM."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clients: dict = {}  # greenlet -> its client socket
        self.idle: set = set()   # greenlets waiting for a connection's next request

    def timeout_ctx(self):
        return _AwaitingRequest(self)

    def handle(self, listener, client, addr):
        me = gevent.getcurrent()
        self.clients[me] = client
        try:
            super().handle(listener, client, addr)
        finally:
            self.clients.pop(me, None)

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        gevent.spawn(self.close_idle)  # not from inside the signal handler

    def close_idle(self) -> None:
        """End every connection that waits for its next request: the reader sees
        end of file and gunicorn closes it, so no greenlet keeps the worker alive."""
        for greenlet in list(self.idle):
            client = self.clients.get(greenlet)
            if client is not None:
                try:
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:  # already gone
                    pass

    def load_wsgi(self):
        super().load_wsgi()
        app = self.wsgi

        def wsgi(environ, start_response):
            # a view that leaves bytes unread (a refused or broken body) ends the
            # connection after its answer: start_response belongs to gunicorn's Response
            environ[CLOSE_CONNECTION] = start_response.__self__.force_close
            return app(environ, start_response)

        self.wsgi = wsgi

    def init_process(self):
        # gunicorn writes every error page through util.write_error (workers/base.py
        # handle_error); this process is a worker of ours, so swap in the JSON writer
        util.write_error = write_json_error
        super().init_process()
