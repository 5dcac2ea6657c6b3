"""Latency of a normal webhook request while idle and slowloris connections are open.

    python -m tests.bench.hostile [--idle 200] [--slow 50] [--requests 200]

Also section 5 of ``tests.bench.run``. ``atp-bridge serve`` (2 workers, as
shipped) with the bench CSV; ``idle`` connections that send nothing and
``slow`` ones trickling a request head or body a byte every 2 s stay open
while one client sends ``requests`` requests, each on a new connection, one
at a time. The same is measured with nothing else open, for reference.
Loopback only, bounded in count and time.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tests.bench.csv_memory import generate
from tests.bench.servers import Bridge

BODY = (b'{"products":[{"product_id":"p","external_identifier":"10000000"}],'
        b'"fulfillment_locations":["STORE00"]}')
REQUEST = (b"POST /availabilities HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


def one_request(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(30)
        s.sendall(REQUEST)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {answer[:200]!r}")
    return (time.perf_counter() - started) * 1000


def latencies(port: int, n: int, idle: int, slow: int) -> dict:
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    trickling = []
    for i in range(slow):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /availabilities HTTP/1.1\r\nHost: b\r\n" + (b"Content-Length: 9999\r\n\r\n" if i % 2 else b""))
        trickling.append(s)
    stop = threading.Event()

    def trickle():
        while not stop.wait(2.0):
            for s in trickling:
                try:
                    s.send(b"a")
                except OSError:
                    pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        ms = sorted(one_request(port) for _ in range(n))
    finally:
        stop.set()
        thread.join(5)
        for s in held + trickling:
            s.close()
    return {"idle": idle, "slow": slow, "n": n, "p50": statistics.median(ms),
            "p99": ms[min(n - 1, int(n * 0.99))], "max": ms[-1]}


def measure(tmp: Path, idle: int = 200, slow: int = 50, n: int = 200) -> list[dict]:
    generate(tmp / "hostile.csv", 100, 5, 1.0)
    (tmp / "hostile.yaml").write_text("adapters:\n  - name: bench\n    type: csv\n    path: hostile.csv\n")
    bridge = Bridge(tmp / "hostile.yaml", tmp / "hostile.log", workers=2)
    try:
        bridge.wait_ready(path="/readyz")
        return [latencies(bridge.port, n, 0, 0), latencies(bridge.port, n, idle, slow)]
    finally:
        bridge.stop()


def table(rows: list[dict]) -> str:
    from tests.bench.report import table as md

    return md(["idle connections", "slowloris connections", "requests", "p50 ms", "p99 ms", "max ms"],
              [[r["idle"], r["slow"], r["n"], f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['max']:.2f}"]
               for r in rows])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atp-hostile-") as name:
        print(table(measure(Path(name), opts.idle, opts.slow, opts.requests)))


if __name__ == "__main__":
    main()
