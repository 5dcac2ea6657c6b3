"""What the REST adapter adds on top of the ERP's own time, at 500 pairs.

    python -m tests.bench.engine [--n 300] [--rounds 5]

A loopback stand-in answers every call at once with a body prepared in
advance (the same bytes each time). For each kind of adapter, its fetch of
50 products x 10 locations is timed against a plain ``requests`` exchange of
the same size (a body as long as the adapter's request, the same answer): the
ERP's "own" time as the bridge sees it. The added time is the median of the
fetch minus the median of that exchange (target: at most 2 ms). The kinds:
the default ``pairs`` wire format, the engine (a templated body and JMESPath
extraction, the README's "query language in a JSON body" example) and the
``netsuite`` connector (SuiteQL template, string values, offset paging, a
bearer token fetched once with a signed JWT). Alternated in rounds, in
process, bounded in count.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import requests

from atp_bridge.adapters import adapter_class
from atp_bridge.adapters.base import Batch
from atp_bridge.config import load_config

PRODUCTS = [f"1{i:07d}" for i in range(50)]
LOCATIONS = [f"STORE{j:02d}" for j in range(10)]
ANSWERS = {
    "/pairs": orjson.dumps({"items": [{"product": p, "location": loc, "atp": 7}
                                      for p in PRODUCTS for loc in LOCATIONS]}),
    "/engine": orjson.dumps({"items": [{"sku": p, "site": loc, "free": "7.000", "reserved": 1}
                                       for p in PRODUCTS for loc in LOCATIONS]}),
    "/services/rest/query/v1/suiteql": orjson.dumps({
        "links": [], "count": 500, "hasMore": False, "offset": 0, "totalResults": 500,
        "items": [{"links": [], "product": p, "location": loc, "atp": "6"} for p in PRODUCTS for loc in LOCATIONS]}),
    "/services/rest/auth/oauth2/v1/token": orjson.dumps({"access_token": "bench-token", "token_type": "Bearer",
                                                          "expires_in": "3600"}),
}
ENGINE = """
  - name: engine
    type: rest
    url: {base}/engine
    body:
      q: >-
        SELECT sku, site, free FROM stock WHERE sku IN ({{{{ products | map('sql') | join(', ') }}}})
        AND site IN ({{{{ locations | map('sql') | join(', ') }}}})
    extract: {{rows: items, product: sku, location: site, atp: free, minus: reserved, combine: sum}}
"""
CONFIG = """adapters:
  - name: pairs
    type: rest
    url: {base}/pairs
""" + ENGINE + """
  - name: netsuite
    type: netsuite
    account_id: "1234567"
    url: {base}
    client_id: bench-client
    certificate_id: bench-cert
    private_key: bench.pem
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a delayed ACK adds 40 ms to every answer
    sizes: dict = {}

    def do_POST(self):
        path = self.path.split("?")[0]
        _Handler.sizes[path] = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        body = ANSWERS[path]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv=None) -> None:
    from tests.vendors.netsuite import write_key

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="calls per round and kind")
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory(prefix="atp-bench-engine-") as tmp:
        write_key(Path(tmp) / "bench.pem", "rsa")
        (Path(tmp) / "bridge.yaml").write_text(CONFIG.format(base=base))
        specs = load_config(Path(tmp) / "bridge.yaml").adapters
        adapters = {s.name: adapter_class(s.type).from_config(s) for s in specs}
    session = requests.Session()

    def fetch(adapter):
        def call():
            values = adapter.fetch(Batch(PRODUCTS, LOCATIONS, time.monotonic() + 10))
            assert len(values) == 500 and values[0] in (7, 6.0)
        return call

    def plain(path):
        def call():
            r = session.post(base + path, data=b"x" * _Handler.sizes[path],
                             headers={"Content-Type": "application/json"})
            assert len(r.content) == len(ANSWERS[path])
        return call

    paths = {"pairs": "/pairs", "engine": "/engine", "netsuite": "/services/rest/query/v1/suiteql"}
    kinds = {}
    for name, adapter in adapters.items():
        fetch(adapter)()  # the token, connections, the request size seen
        kinds[f"{name}: fetch"] = fetch(adapter)
        kinds[f"{name}: plain exchange"] = plain(paths[name])
    for fn in kinds.values():
        timed(fn, 30)  # warm up
    runs = {k: [] for k in kinds}
    for _ in range(opts.rounds):
        for name, fn in kinds.items():
            runs[name].extend(timed(fn, opts.n))
    print("| adapter (500 pairs) | fetch median ms | plain exchange median ms | added ms (target <= 2) |")
    print("| --- | --- | --- | --- |")
    for name in adapters:
        f, p = statistics.median(runs[f"{name}: fetch"]), statistics.median(runs[f"{name}: plain exchange"])
        print(f"| {name} | {f:.2f} | {p:.2f} | {f - p:.2f} |")
    server.shutdown()


if __name__ == "__main__":
    main()
