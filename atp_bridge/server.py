"""Run the app under gunicorn from ``atp-bridge serve``."""
from __future__ import annotations

import os

from gunicorn.app.base import BaseApplication

from atp_bridge import gunicorn_conf
from atp_bridge.config import ENV_VAR


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


def run(config_path: str, *, bind=None, workers=None, threads=None) -> None:
    """Serve ``config_path`` until SIGTERM/SIGINT (gunicorn drains in-flight requests)."""
    os.environ[ENV_VAR] = config_path  # workers build their own app from it
    BridgeServer({"bind": bind, "workers": workers, "threads": threads}).run()
