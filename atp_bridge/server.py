"""Run the app under gunicorn from ``atp-bridge serve``."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.errors import HaltServer

from atp_bridge import gunicorn_conf
from atp_bridge.config import ENV_VAR

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # same name as atp_bridge.metrics; no import here


class BridgeServer(BaseApplication):
    """Gunicorn with :mod:`atp_bridge.gunicorn_conf`, plus the CLI's overrides."""

    def __init__(self, overrides: dict):
        self.overrides = overrides
        super().__init__()

    def load_config(self):
        settings = {k: v for k, v in vars(gunicorn_conf).items()
                    if k in self.cfg.settings and v is not None}
        settings.update({k: v for k, v in self.overrides.items() if v is not None})
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from atp_bridge.app import create_app

        return create_app()  # reads ATP_BRIDGE_CONFIG, set by run()


def prepare_metrics_dir() -> tuple[Path, bool, int]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory: a new temporary
    one, or the one already named, emptied of a previous run's ``*.db`` files
    (stale files would add old counts to the new totals).

    Must run before anything imports prometheus_client in this process: the
    library picks its multiprocess value class at import time. Returns the
    directory, whether it was created here (and is to be removed at exit) and
    the pid of the process that owns it.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False, os.getpid()
    path = Path(tempfile.mkdtemp(prefix="atp-bridge-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True, os.getpid()


def run(config_path: str, *, bind=None, workers=None, connections=None) -> None:
    """Serve ``config_path`` until SIGTERM/SIGINT (gunicorn drains in-flight
    requests for up to ``graceful_timeout``). Call :func:`prepare_metrics_dir`
    first, before the config is loaded."""
    os.environ[ENV_VAR] = config_path  # workers build their own app from it
    try:
        BridgeServer({"bind": bind, "workers": workers,
                      "worker_connections": connections}).run()
    except HaltServer as e:  # raised past gunicorn when a second worker fails to boot while
        # it halts, before it logs the reason: log it, exit with gunicorn's code, no traceback
        logging.getLogger("atp_bridge").error("gunicorn stopped: %s", e.reason)
        raise SystemExit(e.exit_status) from None


def cleanup_metrics_dir(path: Path, created: bool, owner_pid: int) -> None:
    """Remove the metrics directory if :func:`prepare_metrics_dir` created it.

    Gunicorn workers are forks that unwind through the same ``finally`` when
    they exit; only the master (the owner) may remove the directory.
    """
    if created and os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)
