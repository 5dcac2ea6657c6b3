"""The application factory.

:func:`create_app` only wires: it loads the configuration, builds the adapters
and the bridge, and registers routes and error handlers. Shared state lives in
``app.extensions["atp_bridge"]``.
"""
from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass

from flask import Flask

from atp_bridge.adapters.base import config_warnings
from atp_bridge.bridge import Bridge
from atp_bridge.config import load_config
from atp_bridge.config_types import BridgeConfig
from atp_bridge.errors import mask
from atp_bridge.logs import setup_logging
from atp_bridge.openapi import build_openapi

__all__ = ["create_app", "AppState"]

log = logging.getLogger("atp_bridge")


@dataclass
class AppState:
    """What the views share: the config, the bridge, the API keys as bytes and
    the OpenAPI document (JSON bytes, built once)."""

    config: BridgeConfig
    bridge: Bridge
    api_keys: tuple[bytes, ...]
    openapi: bytes = b"{}"


def create_app(config: BridgeConfig | str | None = None) -> Flask:
    """Build the Flask app from a loaded config, a config path, or the default
    (``$ATP_BRIDGE_CONFIG``, else the embedded sample)."""
    from atp_bridge import access, http_errors, metrics, views

    if not isinstance(config, BridgeConfig):
        config = load_config(config)
    setup_logging(config.log_level)
    for w in config_warnings(config):  # check-config's warnings; the adapter copes (a file may arrive)
        log.warning({"msg": mask(f"config warning: {w}"), "file": mask(w.file), "key": w.key})
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    bridge = Bridge.from_config(config)
    metrics.DEADLINE.set(config.deadline_ms / 1000)
    app.extensions["atp_bridge"] = AppState(
        config=config, bridge=bridge,
        api_keys=tuple(k.encode("utf-8") for k in config.api_keys),
        openapi=build_openapi(config))
    atexit.register(bridge.close)
    if not config.api_keys:
        log.warning("AUTH DISABLED: auth.api_keys is empty, so anyone who can reach this "
                    "service can read ATP. Set auth.api_keys to NewStore's webhook API key.")
    webhooks = views.register(app, config.base_path)
    http_errors.register(app)
    access.register(app, webhooks)  # last: it wraps the finished app
    log.info("atp-bridge ready: config=%s adapters=%s", config.source,
             ",".join(a.name for a in config.adapters))
    return app

