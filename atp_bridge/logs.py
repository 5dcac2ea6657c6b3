"""Logging: one JSON object per line on stderr (stdlib logging + orjson).

Every line has ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``msg``. A
record whose message is a dict (the access line) is emitted as that dict plus
those keys, so the hot path pays for one dict and one ``orjson.dumps``.

The level is ``$ATP_BRIDGE_LOG_LEVEL`` if set, else the config's ``log_level``.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import orjson
from gunicorn import glogging

__all__ = ["JsonFormatter", "GunicornLogger", "setup_logging", "LEVEL_ENV", "gunicorn_logconfig"]

LEVEL_ENV = "ATP_BRIDGE_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON; never raises on odd values."""

    _second = (-1, "")  # (whole second, its formatted form): strftime once per second

    def _ts(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return cached[1]

    def format(self, record: logging.LogRecord) -> str:
        ts = self._ts(record.created)
        msg = record.msg
        if type(msg) is dict:
            out = msg  # the caller's own event dict: no copy on the hot path
            out["ts"] = f"{ts}.{int(record.msecs):03d}Z"
            out["level"] = record.levelname
            out["logger"] = record.name
        else:
            out = {"ts": f"{ts}.{int(record.msecs):03d}Z", "level": record.levelname,
                   "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode("utf-8")


def _handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._atp_bridge = True  # type: ignore[attr-defined]  # ours: set up once
    return handler


def resolve_level(config_level: str) -> str:
    """``$ATP_BRIDGE_LOG_LEVEL`` (when valid) wins over the config's ``log_level``."""
    env = (os.environ.get(LEVEL_ENV) or "").upper()
    return env if env in LEVELS else config_level


def setup_logging(config_level: str) -> None:
    """Level the ``atp_bridge`` loggers; add the JSON stderr handler unless the
    host (gunicorn's logconfig, pytest, an embedding app) already configured
    the root logger."""
    logger = logging.getLogger("atp_bridge")
    logger.setLevel(resolve_level(config_level))
    # Our JSON lines carry no caller, thread or process fields, so skip
    # computing them for every record (the logging HOWTO's "Optimization"
    # switches): findCaller alone walks the stack on every access line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if logging.getLogger().handlers:
        return
    if not any(getattr(h, "_atp_bridge", False) for h in logger.handlers):
        logger.addHandler(_handler())


def gunicorn_logconfig() -> dict:
    """``logconfig_dict`` for gunicorn: its own lines in the same JSON format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "atp_bridge.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


class GunicornLogger(glogging.Logger):
    """Gunicorn's logger without its access line: atp-bridge writes its own
    (JSON, with the request id and no secrets). Gunicorn builds the access
    line's atoms for every request whenever a ``logconfig_dict`` is set, which
    cost ~18% of a small request's CPU before this."""

    @property
    def access_log_enabled(self) -> bool:
        return False

    def access(self, resp, req, environ, request_time) -> None:
        return None
