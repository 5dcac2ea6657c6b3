"""Logging: one JSON object per line on stderr (stdlib logging + orjson).

Every line has ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``msg``. A
record whose message is a dict (the access line) is emitted as that dict plus
those keys, so the hot path pays for one dict and one ``orjson.dumps``.

Every other record's message and exception text are masked
(:func:`atp_bridge.errors.mask`): no value from a ``${VAR}`` reaches a line.
The access line is not: it is built from the request (method, path, status,
adapter names, which cannot come from ``${VAR}``) and never from config values.

The level is ``$ATP_BRIDGE_LOG_LEVEL`` if set, else the config's ``log_level``.

Lines are written in batches (:class:`BufferedStreamHandler`): at most every
``$ATP_BRIDGE_LOG_FLUSH_MS`` milliseconds (default 1000; 0 writes each line at
once), at once for WARNING and above, and at exit.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref

import orjson
from gunicorn import glogging

from atp_bridge.errors import mask

__all__ = ["JsonFormatter", "MaskingFormatter", "BufferedStreamHandler", "make_record", "GunicornLogger",
           "setup_logging", "LEVEL_ENV", "FLUSH_ENV", "gunicorn_logconfig", "flush_interval_ms"]

LEVEL_ENV = "ATP_BRIDGE_LOG_LEVEL"
FLUSH_ENV = "ATP_BRIDGE_LOG_FLUSH_MS"
DEFAULT_FLUSH_MS = 1000
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
                   "logger": record.name, "msg": mask(record.getMessage())}
        if record.exc_info:
            out["exc"] = mask(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode("utf-8")


class MaskingFormatter(logging.Formatter):
    """Plain text, secrets masked: for the CLI's own stderr (``atp-bridge query``)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


# every attribute a LogRecord has, as Logger.log makes one with the caller lookup off
_RECORD = {**vars(logging.LogRecord("", logging.INFO, "(unknown file)", 0, "", (), None,
                                    "(unknown function)")),
           "thread": None, "threadName": None, "process": None, "processName": None}


def make_record(name: str, level: int, msg) -> logging.LogRecord:
    """The record ``logging.getLogger(name).log(level, msg)`` would make (with
    the caller lookup off, as :func:`setup_logging` sets it), built by copying
    a template instead of running ``LogRecord.__init__``, which splits a path
    and reads clocks and thread names on every call. For the access line: pass
    it to ``Logger.handle``, which applies the logger's filters and handlers
    exactly as ``log`` does."""
    record = object.__new__(logging.LogRecord)
    now = time.time()
    record.__dict__ = {**_RECORD, "name": name, "msg": msg, "levelno": level,
                       "levelname": logging.getLevelName(level), "created": now,
                       "msecs": int((now - int(now)) * 1000) + 0.0,
                       "relativeCreated": (now - logging._startTime) * 1000}
    if logging.logThreads:  # setup_logging switches these three off
        record.thread, record.threadName = threading.get_ident(), threading.current_thread().name
    if logging.logProcesses:
        record.process = os.getpid()
    if logging.logMultiprocessing:
        mp = sys.modules.get("multiprocessing")
        record.processName = mp.current_process().name if mp is not None else "MainProcess"
    return record


def flush_interval_ms() -> float:
    """``$ATP_BRIDGE_LOG_FLUSH_MS`` (default 1000); ValueError naming the variable if it is not a number >= 0."""
    raw = os.environ.get(FLUSH_ENV, "").strip()
    if not raw:
        return DEFAULT_FLUSH_MS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{FLUSH_ENV}={raw!r}: expected milliseconds, a number >= 0")
    return value


class BufferedStreamHandler(logging.StreamHandler):
    """A StreamHandler that writes its lines in batches, like nginx's
    ``access_log ... buffer= flush=``.

    Lines are kept in memory and written by one ``write`` when ``flush_ms``
    has passed (a daemon thread), when 64 KiB are waiting, at once for a
    record at WARNING or above (after the lines before it, so order is kept),
    and on :meth:`flush`/:meth:`close` (``logging.shutdown`` at exit). Why: a
    ``write`` per access line is a system call per request, and each one
    releases the GIL; under gunicorn's threads those hand-offs cost a small
    request ~8% of a worker's throughput (docs/benchmarks.md). The price: a
    process killed with SIGKILL loses up to ``flush_ms`` of lines.
    ``flush_ms=0`` writes every line at once. A fork writes the held lines
    first (waiting for a write in progress), and the child (a gunicorn worker)
    starts with an empty buffer.
    """

    max_bytes = 64 * 1024

    def __init__(self, stream=None, flush_ms: float | None = None):
        super().__init__(sys.stderr if stream is None else stream)
        self.interval = (flush_interval_ms() if flush_ms is None else flush_ms) / 1000
        self._reset()
        # A fork waits for a write in progress (the flusher's, in gunicorn's master): a child
        # forked mid-write would inherit the stream's internal lock held by a thread it lacks.
        # It also writes what is held first, so the master's lines come before its workers'.
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: (h := ref()) and h._before_fork(),
                            after_in_parent=lambda: (h := ref()) and h.release(),
                            after_in_child=lambda: (h := ref()) and h._reset())

    def _before_fork(self) -> None:
        self.acquire()
        self._write()

    def _reset(self) -> None:
        self._lines: list[str] = []
        self._size = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        self._size += len(line)
        if self.interval <= 0 or record.levelno >= logging.WARNING or self._size >= self.max_bytes:
            self._write()
        elif self._thread is None:
            self._thread = threading.Thread(target=self._flusher, name="atp-bridge-log-flush",
                                            daemon=True)
            self._thread.start()

    def _write(self) -> None:
        if not self._lines:
            return
        data = "\n".join(self._lines) + "\n"
        self._lines.clear()
        self._size = 0
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or broken: nowhere left to write them,
            pass  # and a request must not fail over a log line

    def flush(self) -> None:
        with self.lock:
            self._write()

    def _flusher(self) -> None:
        stop, interval = self._stop, self.interval
        while not stop.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def _handler() -> logging.Handler:
    handler = BufferedStreamHandler(sys.stderr)
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
        "handlers": {"stderr": {"class": "atp_bridge.logs.BufferedStreamHandler",
                                "formatter": "json", "stream": "ext://sys.stderr",
                                "flush_ms": flush_interval_ms()}},
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
