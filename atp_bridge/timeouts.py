"""Time limits on a request's own I/O, and closing its connection.

Under ``atp-bridge serve`` each connection is a gevent greenlet
(:mod:`atp_bridge.worker`), and :func:`time_limit` interrupts whatever this
greenlet is blocked on (reading a trickling body) when the time is up. In a
process gevent has not patched (another WSGI server, tests calling the app
in-process) there is nothing to interrupt a blocked read with: it is a no-op,
and that server's own read timeouts apply.
"""
from __future__ import annotations

import contextlib

__all__ = ["TimeLimit", "time_limit", "close_connection", "CLOSE_CONNECTION"]

CLOSE_CONNECTION = "atp_bridge.close_connection"  # environ key: a callable set by the worker


class TimeLimit(Exception):
    """The time given to :func:`time_limit` ran out."""


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


def time_limit(seconds: float):
    """A context manager raising :class:`TimeLimit` in this greenlet after ``seconds``."""
    if not _gevent_patched():
        return contextlib.nullcontext()
    import gevent

    # at least a millisecond: what is already buffered can still be read
    return gevent.Timeout(max(seconds, 0.001), TimeLimit)


def close_connection(environ: dict) -> None:
    """Close the connection after this answer (its unread bytes are not a request)."""
    close = environ.get(CLOSE_CONNECTION)
    if close is not None:
        close()
