"""A real OTLP/HTTP trace receiver on loopback: what a collector would get from atp-bridge.

``POST /v1/traces`` bodies are decoded with opentelemetry-proto's own
``ExportTraceServiceRequest`` (gzip too) into :class:`Span` records, and
answered with an empty ``ExportTraceServiceResponse``, as a collector does.
``keep=False`` decodes nothing and only counts the posts (the benchmark's
receiver, which discards; ``python -m tests.otlp_receiver PORT`` runs it in
a process of its own).
"""
from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Span:
    """One exported span, ids as lowercase hex (parent ``""`` for a root)."""

    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    resource: dict


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attributes(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs}


def decode(body: bytes) -> list[Span]:
    """The spans of one ``ExportTraceServiceRequest``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(Span(s.name, s.kind, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                                  _attributes(s.attributes), s.status.code, s.status.message, resource))
    return spans


class OtlpReceiver:
    """The receiver; a context manager. ``spans`` holds what arrived, ``posts`` counts exports."""

    def __init__(self, keep: bool = True, port: int = 0):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        self.keep = keep
        self.spans: list[Span] = []
        self.posts = 0
        self.bad: list[str] = []  # requests that were not a valid export
        self._lock = threading.Lock()
        answer = ExportTraceServiceResponse().SerializeToString()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
                if ok and receiver.keep:
                    try:
                        if self.headers.get("Content-Encoding") == "gzip":
                            body = gzip.decompress(body)
                        spans = decode(body)
                    except Exception as e:
                        ok, spans = False, []
                        receiver.bad.append(f"{type(e).__name__}: {e}")
                    with receiver._lock:
                        receiver.spans.extend(spans)
                elif not ok:
                    receiver.bad.append(f"POST {self.path} {self.headers.get('Content-Type')}")
                with receiver._lock:
                    receiver.posts += 1
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "OtlpReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Span]:
        """The spans received, once ``predicate(spans)`` holds (bounded wait, not a timing assertion)."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans) or time.monotonic() > end:
                return spans
            time.sleep(0.05)


def main() -> None:
    """``python -m tests.otlp_receiver PORT``: a discarding receiver in a process of its own
    (the benchmark's, so its work does not slow the ERP stand-in); on SIGTERM prints
    ``posts=N bad=M`` and exits."""
    import signal
    import sys

    rx = OtlpReceiver(keep=False, port=int(sys.argv[1]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with rx:
        print(f"listening {rx.endpoint}", flush=True)
        stop.wait()
    print(f"posts={rx.posts} bad={len(rx.bad)}", flush=True)


if __name__ == "__main__":
    main()
