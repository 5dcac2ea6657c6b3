"""Polling a file for a new version, and work kept off the gevent hub: what the CSV
adapter and the rule files share."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable


def poll_settled(stop: threading.Event, interval_s: float, current: Callable[[], object],
                 seen: Callable[[], object], reload: Callable[[], object],
                 log: logging.Logger, what: str) -> None:
    """Until ``stop`` is set, every ``interval_s``: when the file's signature
    (``current()``) differs from the version last read (``seen()``) and held still
    for one more poll, call ``reload()``. A writer that is still writing is thus
    never read mid-way; any surprise is logged and the polling goes on."""
    pending = None
    while not stop.wait(interval_s):
        try:
            sig = current()
            if sig == seen():
                pending = None
            elif sig != pending:  # changed: wait until it holds still for one more poll
                pending = sig
            else:
                pending = None
                reload()
        except Exception:  # the poller must outlive any surprise
            log.exception("%s failed", what)


def off_hub(fn: Callable, *args):
    """``fn(*args)``: on the gevent hub's thread pool when gevent patched threads
    (so the worker's other greenlets run meanwhile), else here. For work that
    lets go of the GIL (parsing in C, unmapping) but would stop the hub."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)
