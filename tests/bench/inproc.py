"""In-process cost per request: atp-bridge's WSGI app vs the floor's, no server, no sockets.

    python -m tests.bench.inproc [--n 3000] [--profile SIZE]

A quick, low-noise way to see what a change to the hot path buys before the
full wrk benchmark (:mod:`tests.bench.run`). Both WSGI callables are called
directly with the environ gunicorn would build, alternately, several rounds;
the median microseconds per request are printed. atp-bridge runs as under
``atp-bridge serve``: Prometheus multiprocess mode on, INFO access lines to a
file, the gunicorn worker's GC settings. ``--profile 500`` prints a cProfile
of atp-bridge at that many pairs instead.
"""
from __future__ import annotations

import argparse
import gc
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIZES = [(2, 3), (50, 10), (500, 20)]


def environ_for(body: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/availabilities",
        "QUERY_STRING": "", "RAW_URI": "/availabilities", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000", "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "wsgi.version": (1, 0)}


def call(app, body: bytes) -> bytes:
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)

    out = b"".join(app(environ_for(body), start_response))
    if not status or not status[0].startswith("200"):
        raise SystemExit(f"{status}: {out[:300]!r}")
    return out


def per_request_us(app, body: bytes, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        call(app, body)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="requests per round at 6 pairs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, metavar="PAIRS", help="cProfile atp-bridge at this size")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="atp-bridge-inproc-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "metrics")
    (tmp / "metrics").mkdir()
    from tests.bench.csv_memory import generate
    from tests.bench.run import UNIVERSE, write_body, write_config

    csv_path = tmp / "atp.csv"
    generate(csv_path, *UNIVERSE, 1.0)
    os.environ["FLOOR_CSV"] = str(csv_path)
    from atp_bridge.app import create_app
    from tests.bench import floor_app

    from atp_bridge.logs import BufferedStreamHandler, JsonFormatter

    handler = BufferedStreamHandler(open(tmp / "access.log", "a"))  # as under gunicorn
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    bridge = create_app(str(write_config(tmp / "bench.yaml", csv_path.name)))
    gc.freeze()
    gc.set_threshold(7000, 10, 10)
    apps = {"floor": floor_app.app, "atp-bridge": bridge}

    bodies = {}
    for p, loc in SIZES:
        body = write_body(tmp / f"body-{p}x{loc}.json", p, loc, UNIVERSE[0]).read_bytes()
        if call(floor_app.app, body) != call(bridge, body):
            raise SystemExit(f"floor and atp-bridge answer {p}x{loc} differently")
        bodies[p * loc] = body

    if args.profile:
        import cProfile
        import pstats

        body = bodies[args.profile]
        n = max(50, args.n * 6 // args.profile)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            call(bridge, body)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return

    print(f"{'pairs':>6} {'floor us':>9} {'bridge us':>9} {'ratio':>6}")
    for pairs, body in bodies.items():
        n = max(20, args.n * 6 // pairs)
        results = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, app in apps.items():
                results[name].append(per_request_us(app, body, n))
        f, b = statistics.median(results["floor"]), statistics.median(results["atp-bridge"])
        print(f"{pairs:>6} {f:>9.1f} {b:>9.1f} {f / b:>6.2f}")


if __name__ == "__main__":
    main()
