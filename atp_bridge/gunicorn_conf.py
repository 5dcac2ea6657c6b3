"""Gunicorn settings for atp-bridge, read from the environment.

``atp-bridge serve`` loads this module; ``deploy/gunicorn.conf.py`` re-exports
it for a plain ``gunicorn -c deploy/gunicorn.conf.py atp_bridge.wsgi:app``.

Environment: ``ATP_BRIDGE_BIND`` (default 127.0.0.1:8080; one address, see
:func:`parse_bind`), ``WEB_CONCURRENCY``
(workers, default 2), ``ATP_BRIDGE_WORKER_CONNECTIONS`` (connections each
worker serves at once, default 1000),
``ATP_BRIDGE_TIMEOUT`` (worker timeout s, default 30),
``ATP_BRIDGE_GRACEFUL_TIMEOUT`` (SIGTERM drain, s, default 25),
``ATP_BRIDGE_KEEPALIVE`` (s, default 75: above the usual load balancer idle
timeout of 60 s, so the LB closes idle connections, not us),
``ATP_BRIDGE_LOG_LEVEL`` (gunicorn's own lines; default info),
``ATP_BRIDGE_LOG_FLUSH_MS`` (log lines are written in batches at least this
often, default 1000; see :class:`atp_bridge.logs.BufferedStreamHandler`).
A malformed value raises ``ValueError`` naming the variable. The standard
``OTEL_*`` variables turn tracing on in each worker (:mod:`atp_bridge.tracing`:
``post_worker_init`` starts it, ``worker_exit`` sends what is left).

Prometheus multiprocess mode: every worker writes its values under
``$PROMETHEUS_MULTIPROC_DIR`` (``atp-bridge serve`` creates it; with plain
gunicorn, set it to an empty directory yourself). :func:`child_exit` tells
prometheus_client that a worker is gone, so its live gauges disappear while
its counters stay in the totals.
"""
import os
import re
import socket

from atp_bridge.logs import gunicorn_logconfig

BIND_FORMS = "HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080, [::]:8080), unix:PATH or fd://N"
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")  # an IPv4 address or a DNS name


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: expected a whole number >= {minimum}")
    return value


def parse_bind(value: str) -> str:
    """``value`` (stripped) if it is one address gunicorn can listen on, in a
    form that says what it means: ``HOST:PORT`` (``tcp://`` allowed, an IPv6
    host in brackets, port 0-65535, 0 = any free port), ``unix:PATH`` or
    ``fd://N``. Else ``ValueError`` saying what is expected.

    Stricter than gunicorn, which takes a lone ``HOST`` as port 8000 (so a
    typo such as ``nonsense`` becomes a host name it retries for 5 s).
    """
    bind = value.strip()
    if re.match(r"unix:(//)?", bind):
        if re.split(r"unix:(//)?", bind)[-1]:
            return bind
    elif bind.startswith("fd://"):
        if bind[5:].isdigit():
            return bind
    else:
        netloc = bind[6:] if bind.startswith("tcp://") else bind
        host, sep, port = netloc.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            try:
                socket.inet_pton(socket.AF_INET6, host[1:-1])
            except (OSError, ValueError):
                host = ""
        elif not _HOST.fullmatch(host):
            host = ""
        if sep and host and port.isdigit() and port.isascii():
            if int(port) > 65535:
                raise ValueError(f"port {port} is out of range (0-65535; 0 = any free port)")
            return bind
    raise ValueError(f"expected {BIND_FORMS}")


def _bind(name: str, default: str) -> str:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        return parse_bind(raw)
    except ValueError as e:
        raise ValueError(f"{name}={raw!r}: {e}") from None


bind = _bind("ATP_BRIDGE_BIND", "127.0.0.1:8080")
workers = _int("WEB_CONCURRENCY", 2, 1)
# gevent, with JSON error pages: an idle or slow client costs a greenlet, never
# another request's turn (atp_bridge/worker.py says why, docs/benchmarks.md measures it)
worker_class = "atp_bridge.worker.Worker"
worker_connections = _int("ATP_BRIDGE_WORKER_CONNECTIONS", 1000, 1)
timeout = _int("ATP_BRIDGE_TIMEOUT", 30)
# SIGTERM: stop accepting, finish in-flight requests for up to this long, exit.
# Keep it below Kubernetes' terminationGracePeriodSeconds minus the preStop sleep.
graceful_timeout = _int("ATP_BRIDGE_GRACEFUL_TIMEOUT", 25)
keepalive = _int("ATP_BRIDGE_KEEPALIVE", 75)
# each worker builds its own app after fork (and after gevent patched it): adapter
# pools and sockets are per process
preload_app = False
accesslog = None  # atp-bridge writes its own JSON access line (without secrets)
# gunicorn 24+ opens a control socket at ~/.gunicorn/gunicorn.ctl, one path shared by every
# server of the user (and unwritable under a read-only root fs); atp-bridge does not use it
control_socket_disable = True
logger_class = "atp_bridge.logs.GunicornLogger"  # and gunicorn does not build one per request
errorlog = "-"
loglevel = (os.environ.get("ATP_BRIDGE_LOG_LEVEL") or "info").lower()
# gunicorn's own lines in the same one-JSON-object-per-line format on stderr
logconfig_dict = gunicorn_logconfig()


def post_worker_init(worker):
    """Gunicorn hook: the worker's app is built; start tracing if ``OTEL_*``
    asks for it (:mod:`atp_bridge.tracing`), tune the garbage collector.

    ``gc.freeze()`` moves everything built at start-up (config, adapters, CSV
    tables) out of the collector's view, so full collections stop rescanning it;
    a larger first-generation threshold means a 10,000-pair answer (10,000
    dicts) triggers a handful of young collections instead of ~15. Measured:
    about 9% less time per 10,000-pair request (docs/benchmarks.md).
    """
    import gc

    from atp_bridge import tracing

    # here, not in post_fork: after gevent patched the worker, so the span exporter's
    # thread and sockets are the worker's own greenlets
    tracing.setup()
    gc.freeze()
    gc.set_threshold(7000, 10, 10)


def worker_exit(server, worker):
    """Gunicorn hook, in the worker as it exits: export the spans still queued."""
    from atp_bridge import tracing

    tracing.shutdown()


def child_exit(server, worker):
    """Gunicorn hook: a worker exited; drop its live gauges from /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_abort(worker):
    """Gunicorn hook: a worker hit ``timeout`` (SIGABRT); say so before it dies."""
    worker.log.warning("worker %s aborted after timeout=%ss: a request ran too long",
                       worker.pid, timeout)
