"""Which ``OTEL_*`` settings turn tracing on, and URLs as spans show them.

Apart from :mod:`atp_bridge.tracing` so that deciding costs no OpenTelemetry
import (and reads as one page); the rules are in :func:`decide`.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from atp_bridge.errors import mask

__all__ = ["decide", "shown_url", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"  # the OTLP/HTTP spec's default
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")  # first set wins


def decide(env=None) -> tuple[str | None, str | None]:
    """``(endpoint, None)`` when ``env`` (default ``os.environ``) turns tracing
    on, ``(None, None)`` when it is off, ``(None, warning)`` when it asks for
    tracing in a way that cannot work. Never logs, never imports OpenTelemetry."""
    env = os.environ if env is None else env

    def get(name: str) -> str:
        return (env.get(name) or "").strip()

    exporter = get("OTEL_TRACES_EXPORTER").lower()
    if get("OTEL_SDK_DISABLED").lower() == "true" or exporter == "none":
        return None, None
    var = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"  # used as is; the general one gets /v1/traces
    endpoint = get(var)
    if not endpoint and get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        var = "OTEL_EXPORTER_OTLP_ENDPOINT"
        endpoint = get(var).rstrip("/") + "/v1/traces"
    if not endpoint and not exporter:
        return None, None
    if exporter not in ("", "otlp"):
        return None, (f"tracing off: OTEL_TRACES_EXPORTER={exporter!r}: atp-bridge exports traces "
                      f"with 'otlp' (OTLP/HTTP) only; set it to otlp or leave it unset")
    protocol = next((n for n in PROTOCOL_VARS if get(n)), None)
    if protocol and get(protocol) != "http/protobuf":
        return None, (f"tracing off: {protocol}={get(protocol)!r}: atp-bridge exports over OTLP/HTTP "
                      f"with protobuf only; set it to http/protobuf or leave it unset")
    if not endpoint:
        return DEFAULT_ENDPOINT, None
    problem = _url_problem(endpoint)
    if problem:  # the value itself is not quoted: it may carry credentials
        return None, f"tracing off: {var} {problem}; expected e.g. http://otel-collector:4318"
    return endpoint, None


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as e:
        return f"is not a valid URL ({e})"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    return None


def shown_url(url: str) -> str:
    """``url`` as spans and logs show it: no user info, query or fragment (they
    may carry credentials), and any configured secret masked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return mask(urlunsplit((parts.scheme, host + (f":{port}" if port else ""), parts.path, "", "")))
