"""A paced load: POSTs at a fixed rate, each request's latency measured from when it was due.

``wrk`` sends as fast as the server answers, so it saturates every core and
leaves nothing for anything else the server must do (a reload's build). A
real load has a rate. :class:`PacedLoad` sends request ``k`` at ``start + k /
rate`` over ``connections`` keep-alive HTTP/1.1 connections (asyncio, in a
process of its own, so the caller's threads cannot delay it), and records
``(due, latency)`` with the latency counted from the due time, so a request
that had to wait for a busy server counts its wait (no coordinated omission).
``time.monotonic`` is the machine's clock: the caller's times compare with
``due``. The client costs ~50 us of CPU per request: at 2,000 rps about a
tenth of a core.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from urllib.parse import urlsplit


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN if there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class PacedLoad:
    """POST ``body`` to ``url`` at ``rate`` per second until :meth:`stop`; see the module doc."""

    def __init__(self, url: str, body: Path, rate: float, connections: int = 16):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        payload = body.read_bytes()
        self.request = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                        ).encode() + payload
        self.rate, self.connections = rate, connections
        self.samples: list[tuple[float, float, int]] = []  # (due monotonic, latency s, status)
        self.errors = 0
        ctx = multiprocessing.get_context("fork")
        self._stop = ctx.Event()
        self._results, self._send = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=self._child, daemon=True)

    def start(self) -> "PacedLoad":
        self._process.start()
        return self

    def stop(self) -> None:
        """Stop sending and collect the samples."""
        self._stop.set()
        self.samples, self.errors = self._results.recv()
        self._process.join(timeout=30)

    def _child(self) -> None:
        asyncio.run(self._main())
        self._send.send((self.samples, self.errors))

    def window(self, since: float, until: float) -> dict:
        """rps, p50, p99 and max (ms) and errors of the requests due in ``[since, until)``."""
        return self.pooled([(since, until)])

    def pooled(self, spans) -> dict:
        """:meth:`window` over the requests due in any of ``spans`` (``(since, until)`` pairs)."""
        picked = [s for s in self.samples if any(a <= s[0] < b for a, b in spans)]
        lat = [s[1] * 1e3 for s in picked]
        span = max(sum(b - a for a, b in spans), 1e-9)
        return {"requests": len(lat), "rps": len(lat) / span, "p50": percentile(lat, 50),
                "p99": percentile(lat, 99), "max": max(lat, default=float("nan")),
                "non_200": sum(1 for s in picked if s[2] != 200)}

    async def _main(self) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        workers = [asyncio.create_task(self._connection(queue)) for _ in range(self.connections)]
        start, k = time.monotonic(), 0
        while not self._stop.is_set():
            due = start + k / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(due)
            k += 1
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _connection(self, queue: asyncio.Queue) -> None:
        reader = writer = None
        while True:
            due = await queue.get()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(self.request)
                status = await _response(reader)
                self.samples.append((due, time.monotonic() - due, status))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None


async def _response(reader) -> int:
    """Read one HTTP/1.1 response with a Content-Length; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return status
