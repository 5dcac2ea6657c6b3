"""What the REST adapter adds on top of the ERP's own time, at 500 pairs.

    python -m tests.bench.engine [--n 300] [--rounds 5]

A loopback stand-in answers every call at once with a body prepared in
advance (the same bytes each time). Three things are timed, alternately, in
rounds: the plain HTTP exchange (``requests`` posting the same request bytes
and reading the same answer: the ERP's "own" time as the bridge sees it),
``RestAdapter.fetch`` with the default ``pairs`` wire format, and
``fetch`` with the engine (a templated body and JMESPath extraction, the
"query language in a JSON body" example of the README). The added time is
the median of fetch minus the median of the plain exchange (target: at most
2 ms each). In process, no server of ours; bounded in count.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import requests

from atp_bridge.adapters.base import Batch
from atp_bridge.adapters.rest import RestAdapter
from atp_bridge.adapters.rest_options import RestOptionsSchema
from atp_bridge.config_types import AdapterSpec

PRODUCTS = [f"1{i:07d}" for i in range(50)]
LOCATIONS = [f"STORE{j:02d}" for j in range(10)]
PAIRS_ANSWER = orjson.dumps({"items": [{"product": p, "location": loc, "atp": 7}
                                       for p in PRODUCTS for loc in LOCATIONS]})
ENGINE_ANSWER = orjson.dumps({"items": [{"sku": p, "site": loc, "free": "7.000", "reserved": 1}
                                        for p in PRODUCTS for loc in LOCATIONS]})
ENGINE = {"body": {"q": "SELECT sku, site, free FROM stock WHERE sku IN "
                        "({{ products | map('sql') | join(', ') }}) AND site IN "
                        "({{ locations | map('sql') | join(', ') }})"},
          "extract": {"rows": "items", "product": "sku", "location": "site", "atp": "free",
                      "minus": "reserved", "combine": "sum"}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a delayed ACK adds 40 ms to every answer

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = ENGINE_ANSWER if self.path == "/engine" else PAIRS_ANSWER
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def adapter(url: str, **options) -> RestAdapter:
    spec = AdapterSpec(name="bench", type="rest", options=RestOptionsSchema().load({"url": url, **options}))
    return RestAdapter.from_config(spec)


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="calls per round and kind")
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    pairs, engine = adapter(f"{base}/pairs"), adapter(f"{base}/engine", **ENGINE)
    request_bytes = orjson.dumps({"items": [{"product": p, "location": loc} for p in PRODUCTS for loc in LOCATIONS]})
    session = requests.Session()

    def plain():
        r = session.post(f"{base}/pairs", data=request_bytes, headers={"Content-Type": "application/json"})
        assert len(r.content) == len(PAIRS_ANSWER)

    def fetch(a):
        def call():
            values = a.fetch(Batch(PRODUCTS, LOCATIONS, time.monotonic() + 10))
            assert len(values) == 500 and values[0] in (7, 6.0)
        return call

    kinds = {"plain HTTP exchange": plain, "pairs style": fetch(pairs), "engine": fetch(engine)}
    for fn in kinds.values():
        timed(fn, 30)  # warm up: connections, caches
    runs = {k: [] for k in kinds}
    for _ in range(opts.rounds):
        for name, fn in kinds.items():
            runs[name].extend(timed(fn, opts.n))
    plain_ms = statistics.median(runs["plain HTTP exchange"])
    print("| what (500 pairs) | median ms | added over the plain exchange, ms (target <= 2) |")
    print("| --- | --- | --- |")
    for name, ms in runs.items():
        med = statistics.median(ms)
        added = "" if name.startswith("plain") else f"{med - plain_ms:.2f}"
        print(f"| {name} | {med:.2f} | {added} |")
    server.shutdown()


if __name__ == "__main__":
    main()
