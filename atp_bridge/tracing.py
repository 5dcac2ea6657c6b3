"""Traces over OTLP/HTTP (OpenTelemetry), off unless the standard ``OTEL_*`` variables ask.

All OpenTelemetry code of atp-bridge is here, and none of it is imported until
:func:`setup` turns tracing on: off, each hook on the request path is one
``tracing.tracer is None`` check (``pip install "atp-bridge[otel]"`` brings it).

:func:`decide` says when it is on: never with ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none``; else when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
(as is) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus ``/v1/traces``) is set, or
``OTEL_TRACES_EXPORTER=otlp`` (the spec's default ``http://localhost:4318``).
A setting that cannot work (an endpoint that is not an http(s) URL with a host,
another exporter or protocol, the extra not installed) leaves it off with ONE
warning naming the variable; the webhook serves as before. The SDK reads the
rest itself (``OTEL_SERVICE_NAME``, default here ``atp-bridge``;
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS`` and ``_TIMEOUT``,
``OTEL_BSP_*``, ``OTEL_TRACES_SAMPLER``, ``OTEL_PROPAGATORS``).

Spans: SERVER per webhook request (:func:`serve`), INTERNAL per adapter call
(:func:`adapter_call`), CLIENT per ERP HTTP call with ``traceparent`` sent
(:func:`http_call`) and per Redis round trip (:func:`redis_call`); ERP and
Redis spans only inside a request's trace (probes start no traces).
Gunicorn: :func:`setup` runs in each worker after fork and gevent's patch
(``post_worker_init``), so the exporter's thread is the worker's own greenlet;
:func:`shutdown` flushes at the worker's exit (``worker_exit``).
"""
from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from atp_bridge.errors import AdapterError, mask
from atp_bridge.tracing_env import decide, shown_url

__all__ = ["tracer", "decide", "shown_url", "setup", "shutdown", "serve", "adapter_call", "http_call",
           "redis_call", "submitter", "INSTALL_HINT", "DEFAULT_SERVICE_NAME"]

log = logging.getLogger("atp_bridge.tracing")

tracer = None  # the Tracer while tracing is on in this process; hooks check only this
_ot = None  # the OpenTelemetry names the helpers use, bound by setup()
_provider = None

INSTALL_HINT = 'pip install "atp-bridge[otel]"'
DEFAULT_SERVICE_NAME = "atp-bridge"
PREFIX = "atp_bridge."


def setup() -> bool:
    """Turn tracing on in this process if the environment asks for it; True when on.

    Called once per gunicorn worker (``post_worker_init``). A request for
    tracing that cannot work logs one warning and leaves tracing off.
    """
    global tracer, _ot, _provider
    if tracer is not None:
        return True
    endpoint, warning = decide()
    if endpoint is None:
        if warning:
            log.warning(warning)
        return False
    try:
        from opentelemetry import propagate, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as e:
        log.warning(f"tracing off: OTEL_* asks for traces but OpenTelemetry is not installed "
                    f"({e.name}); {INSTALL_HINT}")
        return False
    try:
        from importlib import metadata

        try:
            release = metadata.version("atp-bridge")
        except metadata.PackageNotFoundError:  # run from a source tree
            release = "unknown"
        resource = Resource.create({"service.version": release})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            # neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    except Exception as e:  # an SDK refusing a value (OTEL_BSP_*, headers...) must not stop the worker
        log.warning(f"tracing off: OpenTelemetry refused the OTEL_* settings: {type(e).__name__}: "
                    f"{mask(str(e))}")
        return False
    trace.set_tracer_provider(provider)
    _ot = _Names(trace, propagate)
    _provider = provider
    tracer = provider.get_tracer("atp_bridge", release)
    log.info("tracing on: spans exported over OTLP/HTTP to %s as service.name=%s", shown_url(endpoint),
             resource.attributes.get(SERVICE_NAME))
    return True


def shutdown(timeout_s: float = 3.0) -> None:
    """Export what is still queued and stop, for a worker's exit: at most
    ``timeout_s``, whatever the collector does. The SDK's own flush has no
    bound (it waits out the exporter's retries, ~10 s against a collector that
    is down), so it runs in a thread this call stops waiting for."""
    global tracer, _provider
    provider, _provider, tracer = _provider, None, None
    if provider is None:
        return
    import threading

    def stop() -> None:
        try:
            provider.shutdown()  # the span processor exports what it holds, then stops
        except Exception as e:  # the exit goes on
            log.warning("tracing: exporting spans at exit failed: %s: %s", type(e).__name__, mask(str(e)))

    stopping = threading.Thread(target=stop, name="atp-bridge-tracing-exit", daemon=True)
    stopping.start()
    stopping.join(timeout_s)
    if stopping.is_alive():
        log.warning("tracing: spans not exported within %.0f s of the worker's exit were dropped "
                    "(is the collector reachable?)", timeout_s)


class _Names:
    """The OpenTelemetry API names the helpers use, looked up once."""

    def __init__(self, trace, propagate):
        self.trace, self.propagate = trace, propagate
        self.SERVER, self.CLIENT = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
        self.ERROR = trace.StatusCode.ERROR
        self.Status = trace.Status


class _EnvironGetter:
    """Reads propagation headers (``traceparent``...) from a WSGI environ."""

    def get(self, carrier: dict, key: str):
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: dict) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_ENVIRON = _EnvironGetter()


def serve(app, environ: dict, start_response, request_id: str, route: str, facts_key: str):
    """``app(environ, start_response)`` inside the request's SERVER span.

    The span continues a caller's ``traceparent`` if one came, and carries the
    request id the bridge answered with, the pairs, the adapters asked and
    the degraded reason (status ERROR when degraded or 5xx)."""
    answered = []

    def start(status: str, headers: list, exc_info=None):
        answered.append(status)
        return start_response(status, headers, exc_info)

    method = environ.get("REQUEST_METHOD", "")
    parent = _ot.propagate.extract(environ, getter=_ENVIRON)
    with tracer.start_as_current_span(f"{method} {route}", context=parent, kind=_ot.SERVER,
                                      record_exception=False, attributes={
            "http.request.method": method, "http.route": route, "url.path": route,
            "url.scheme": environ.get("wsgi.url_scheme", "http"), PREFIX + "request_id": request_id}) as span:
        body = app(environ, start)
        status = int(answered[-1][:3]) if answered else 500
        found = {"http.response.status_code": status}  # one call: each set_attribute takes a lock
        facts = environ.get(facts_key)
        if facts is not None:
            pairs, adapters, reason = facts
            found[PREFIX + "pairs"] = pairs
            found[PREFIX + "adapters"] = list(adapters or ())
            if reason:
                found[PREFIX + "degraded"] = reason
                span.set_status(_ot.Status(_ot.ERROR, f"degraded: {reason}"))
        span.set_attributes(found)
        if status >= 500:
            span.set_status(_ot.Status(_ot.ERROR, f"HTTP {status}"))
    return body


def submitter(executor):
    """``executor.submit`` carrying this request's trace context into the pool
    thread: a pool thread runs in its own context, and its spans would start
    traces of their own."""
    import contextvars

    def submit(fn, *args, **kwargs):
        return executor.submit(contextvars.copy_context().run, fn, *args, **kwargs)

    return submit


_type_names: dict[type, str] = {}


def type_name(adapter) -> str:
    """The ``type:`` an adapter's class is registered as (its class name if none)."""
    cls = type(adapter)
    name = _type_names.get(cls)
    if name is None:
        from atp_bridge.adapters import BUILTINS, _entry_points

        target = f"{cls.__module__}:{cls.__qualname__}"
        known = {**{ep.value: n for n, ep in _entry_points().items()},
                 **{t: n for n, t in BUILTINS.items()}}
        name = _type_names[cls] = known.get(target, cls.__qualname__)
    return name


def adapter_call(adapter, batch, fetch):
    """``fetch(batch)`` (the adapter's measured fetch) inside an INTERNAL span:
    adapter name and type, pairs, outcome (``ok``, ``late``: answered after the
    deadline, ``error``) and the error's reason (``timeout``, ``unavailable``, ``error``...)."""
    with tracer.start_as_current_span(f"adapter {adapter.name}", record_exception=False,
                                      set_status_on_exception=False, attributes={
            PREFIX + "adapter.name": adapter.name, PREFIX + "adapter.type": type_name(adapter),
            PREFIX + "adapter.pairs": len(batch), PREFIX + "adapter.products": len(batch.products),
            PREFIX + "adapter.locations": len(batch.locations)}) as span:
        try:
            answer = fetch(batch)
        except AdapterError as e:
            span.set_attributes({PREFIX + "adapter.outcome": "error", PREFIX + "adapter.error": e.reason})
            span.set_status(_ot.Status(_ot.ERROR, mask(str(e))[:500]))
            raise
        known = len(answer) - answer.count(None)  # fetch returns a list
        if time.monotonic() > batch.deadline:  # the bridge has given up on it
            span.set_attributes({PREFIX + "adapter.outcome": "late", PREFIX + "adapter.error": "timeout",
                                 PREFIX + "adapter.known": known})
            span.set_status(_ot.Status(_ot.ERROR, "answered after the deadline"))
        else:
            span.set_attributes({PREFIX + "adapter.outcome": "ok", PREFIX + "adapter.known": known})
        return answer


def _in_trace() -> bool:
    return _ot.trace.get_current_span().get_span_context().is_valid


def _server(parts, default_port: int) -> dict:
    try:
        port = parts.port or default_port
    except ValueError:
        port = 0
    return {"server.address": parts.hostname or "", "server.port": port}


def _failed(span, error_type: str, description: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(_ot.Status(_ot.ERROR, description))


def http_call(send, session, method: str, url: str, **kwargs):
    """``send(session, method, url, **kwargs)`` in a CLIENT span, with the trace
    context (``traceparent``) added to the request headers. Outside a request's
    trace (a readiness probe) the call goes out as it is."""
    if not _in_trace():
        return send(session, method, url, **kwargs)
    parts = urlsplit(url)
    with tracer.start_as_current_span(method, kind=_ot.CLIENT, record_exception=False,
                                      set_status_on_exception=False, attributes={
            "http.request.method": method, "url.full": shown_url(url),
            **_server(parts, 443 if parts.scheme == "https" else 80)}) as span:
        headers = dict(kwargs.get("headers") or {})
        _ot.propagate.inject(headers)
        kwargs["headers"] = headers
        try:
            status, body, answered = send(session, method, url, **kwargs)
        except Exception as e:  # its message may quote the URL's query: the type only
            _failed(span, type(e).__name__, type(e).__name__)
            raise
        span.set_attributes({"http.response.status_code": status, "http.response.body.size": len(body)})
        if status >= 400:
            _failed(span, str(status), f"HTTP {status}")
        return status, body, answered


def redis_call(where: str, operation: str, n_keys: int, call, *args):
    """``call(*args)``, one Redis round trip, in a CLIENT span: the command and
    how many keys, never a key or a value. ``where`` is the redacted URL."""
    if not _in_trace():
        return call(*args)
    parts = urlsplit(where)
    attributes = {"db.system.name": "redis", "db.operation.name": operation, **_server(parts, 6379),
                  PREFIX + "redis.keys": n_keys}
    if parts.path.strip("/").isdigit():
        attributes["db.namespace"] = parts.path.strip("/")
    with tracer.start_as_current_span(operation, kind=_ot.CLIENT, record_exception=False,
                                      set_status_on_exception=False, attributes=attributes) as span:
        try:
            return call(*args)
        except Exception as e:
            _failed(span, type(e).__name__, type(e).__name__)
            raise
