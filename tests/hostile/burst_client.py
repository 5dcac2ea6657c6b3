"""A burst of concurrent webhook requests, in a process of its own.

    python -m tests.hostile.burst_client URL KEY N < body

Prints one JSON list: per request ``[seconds, status, X-ATP-Degraded, atps]``.
The test that measures answer times runs its clients here, so that what it
measures is the server, not the pytest process's own heap and threads (after a
thousand tests, its garbage collection pauses the client threads).
"""
from __future__ import annotations

import sys
import threading
import time

import orjson
import requests


def burst(url: str, key: str, n: int, body: bytes) -> list:
    results: list = [None] * n
    go = threading.Barrier(n)

    def ask(i: int) -> None:
        go.wait()
        started = time.monotonic()
        r = requests.post(url, data=body, timeout=15,
                          headers={"Authorization": key, "Content-Type": "application/json",
                                   "Connection": "close"})
        results[i] = [time.monotonic() - started, r.status_code, r.headers.get("X-ATP-Degraded"),
                      [a["atp"] for a in orjson.loads(r.content)["availabilities"]]]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


if __name__ == "__main__":
    url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.stdout.write(orjson.dumps(burst(url, key, n, sys.stdin.buffer.read())).decode())
