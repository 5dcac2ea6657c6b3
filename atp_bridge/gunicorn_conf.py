"""Gunicorn settings for atp-bridge, read from the environment.

``atp-bridge serve`` loads this module; ``deploy/gunicorn.conf.py`` re-exports
it for a plain ``gunicorn -c deploy/gunicorn.conf.py atp_bridge.wsgi:app``.

Environment: ``ATP_BRIDGE_BIND`` (default 127.0.0.1:8080), ``WEB_CONCURRENCY``
(workers, default 2), ``ATP_BRIDGE_THREADS`` (threads per worker, default 8),
``ATP_BRIDGE_TIMEOUT`` (worker timeout s, default 30),
``ATP_BRIDGE_GRACEFUL_TIMEOUT`` (SIGTERM drain, s, default 25),
``ATP_BRIDGE_KEEPALIVE`` (s, default 75: above the usual load balancer idle
timeout of 60 s, so the LB closes idle connections, not us).
"""
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


bind = os.environ.get("ATP_BRIDGE_BIND", "127.0.0.1:8080")
workers = _int("WEB_CONCURRENCY", 2)
worker_class = "gthread"
threads = _int("ATP_BRIDGE_THREADS", 8)
timeout = _int("ATP_BRIDGE_TIMEOUT", 30)
graceful_timeout = _int("ATP_BRIDGE_GRACEFUL_TIMEOUT", 25)
keepalive = _int("ATP_BRIDGE_KEEPALIVE", 75)
# each worker builds its own app after fork: adapter threads and sockets are per process
preload_app = False
accesslog = None
errorlog = "-"
