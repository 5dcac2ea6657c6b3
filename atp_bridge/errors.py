"""The one error hierarchy of atp-bridge.

Library errors (requests, redis, csv, yaml) are converted at the adapter or
config boundary with ``raise ... from e``, so callers only ever catch these.
"""
from __future__ import annotations


class AtpBridgeError(Exception):
    """Root of every error atp-bridge raises on purpose."""


class ConfigError(AtpBridgeError):
    """The configuration is invalid; ``problems`` lists every ``file: key: message``."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class AdapterError(AtpBridgeError):
    """An adapter could not answer. ``reason`` is short and safe to log and to
    put in the ``X-ATP-Degraded`` header (``error`` or ``timeout``)."""

    reason = "error"

    def __init__(self, adapter: str, message: str):
        self.adapter = adapter
        self.message = message
        super().__init__(f"adapter {adapter!r}: {message}")


class AdapterTimeout(AdapterError):
    """The adapter did not answer before the request deadline."""

    reason = "timeout"


class AdapterUnavailable(AdapterError):
    """The adapter refuses to try (data not loaded yet, circuit open...)."""

    reason = "unavailable"


class UnknownAdapterType(AtpBridgeError):
    """No built-in adapter nor entry point has this ``type`` name."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"unknown adapter type {name!r}; known types: {', '.join(known)}")


class RequestError(AtpBridgeError):
    """The webhook request is invalid; becomes a 4xx JSON envelope."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request",
                 details: list[dict] | None = None):
        self.message = message
        self.status = status
        self.code = code
        self.details = details or []
        super().__init__(message)
