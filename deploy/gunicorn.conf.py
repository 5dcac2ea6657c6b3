"""Gunicorn config for ``gunicorn -c deploy/gunicorn.conf.py atp_bridge.wsgi:app``.

Everything lives in :mod:`atp_bridge.gunicorn_conf` (which ``atp-bridge serve``
uses too): settings read from the environment, the Prometheus multiprocess
``child_exit`` hook, JSON logging. With plain gunicorn, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory yourself before starting.
"""
from atp_bridge.gunicorn_conf import *  # noqa: F401,F403
from atp_bridge.gunicorn_conf import child_exit, worker_abort  # noqa: F401  (hooks, explicitly)
