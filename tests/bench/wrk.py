"""Run ``wrk`` against one server with one POST body; bounded in time, loopback only."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# wrk's done() hook prints exact numbers (microseconds), no parsing of "1.23ms"
LUA = r"""
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d "
    .. "status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class Result:
    """One wrk run: throughput and latency (ms)."""

    requests: int
    seconds: float
    p50: float
    p90: float
    p99: float
    max: float
    errors: dict

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class Wrk:
    """``wrk -t T -c C -d S --latency`` with the POST script, from ``workdir``."""

    def __init__(self, workdir: Path, threads: int = 1, connections: int = 8):
        self.binary = shutil.which("wrk")
        if self.binary is None:
            raise SystemExit("wrk not found: install it (Debian/Ubuntu: apt-get install -y wrk)")
        self.script = workdir / "post.lua"
        self.script.write_text(LUA)
        self.threads, self.connections = threads, connections

    def start(self, url: str, body: Path, seconds: float, connections: int | None = None):
        """Start a run in the background; :meth:`finish` it."""
        c = connections or self.connections
        args = [self.binary, f"-t{min(self.threads, c)}", f"-c{c}", f"-d{max(1, round(seconds))}s",
                "--timeout", "10s", "--latency", "-s", str(self.script), url + "/availabilities"]
        return subprocess.Popen(args, env={**os.environ, "BENCH_BODY": str(body)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def finish(proc, seconds: float) -> Result:
        out, err = proc.communicate(timeout=seconds + 30)
        line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip() or out.strip()}")
        v = dict(kv.split("=") for kv in line.split()[1:])
        errors = {k: int(v[k]) for k in ("status", "connect", "read", "write", "timeout") if int(v[k])}
        if "status" in errors:
            raise RuntimeError(f"non-2xx answers under load: {errors}\n{out}")
        return Result(int(v["requests"]), int(v["duration_us"]) / 1e6, int(v["p50_us"]) / 1e3,
                      int(v["p90_us"]) / 1e3, int(v["p99_us"]) / 1e3, int(v["max_us"]) / 1e3, errors)

    def run(self, url: str, body: Path, seconds: float, connections: int | None = None) -> Result:
        return self.finish(self.start(url, body, seconds, connections), seconds)
