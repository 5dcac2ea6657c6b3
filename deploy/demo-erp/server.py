"""A stand-in ERP for the compose demo, answering the rest adapter's default wire format.

``POST /atp`` with ``{"items": [{"product": P, "location": L}, ...]}`` answers
``{"items": [{"product": P, "location": L, "atp": N}, ...]}``; N is stable per
pair (a hash), so repeated questions get the same answer. ``GET /health``
answers 200. When ``DEMO_ERP_TOKEN`` is set, ``Authorization: Bearer <token>``
is required. Standard library only: ``python server.py`` (port ``$PORT``, 8000).
"""
import json
import os
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def atp_for(product: str, location: str) -> int:
    return zlib.crc32(f"{product}@{location}".encode()) % 40


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, doc) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        self._send(404, {"error": "not found"})

    def do_POST(self):
        token = os.environ.get("DEMO_ERP_TOKEN")
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            return self._send(401, {"error": "unauthorized"})
        if self.path != "/atp":
            return self._send(404, {"error": "not found"})
        try:
            doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            items = [{"product": str(i["product"]), "location": str(i["location"])} for i in doc["items"]]
        except (ValueError, KeyError, TypeError):
            return self._send(400, {"error": "expected {\"items\": [{\"product\", \"location\"}]}"})
        self._send(200, {"items": [{**i, "atp": atp_for(i["product"], i["location"])} for i in items]})

    def log_message(self, fmt, *args):  # quiet: one line per request is noise in the demo
        pass


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
