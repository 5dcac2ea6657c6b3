"""A server worker's CPU time per request: less swayed by other load on the machine than
requests per second (a busy machine slows a run down, it adds little CPU to each request)."""
from __future__ import annotations

import os
from pathlib import Path

from tests.bench.servers import children

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def measure(wrk, server, body: Path, seconds: float):
    """``(wrk result, worker CPU microseconds per request)`` of one run against a
    1-worker server."""
    (worker,) = children(server.proc.pid)
    before = cpu_s(worker)
    result = wrk.run(server.url, body, seconds)
    return result, (cpu_s(worker) - before) / result.requests * 1e6
