"""Big catalogues: the shared CSV table at 1M, 10M and 50M rows (a script, not a test).

    python -m tests.bench.scale [--rows 1M,10M,50M] [--workers 4] [--dir DIR]

For each size, a CSV of P products x 500 locations is generated in DIR
(default: a temporary directory; 50M rows is ~1 GB: check ``df -h`` first),
and ``atp-bridge serve --workers N`` is started on it with an empty table
directory. Measured: build time (the builder's own log line), ready time
(``/readyz`` 200 after start), the PSS of the whole serving tree (master,
workers, any builder; ``/proc/<pid>/smaps_rollup``, shared pages counted once)
minus the same tree serving a 1-row file, restart-ready time (every worker
SIGKILLed; ``/readyz`` 200 again once gunicorn's new workers mapped the
table), 500-pair latency under wrk, and a reload (the file touched: parsed
again once, swapped in every worker) with latency and peak tree PSS during it.
Files are deleted afterwards.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import tempfile
import threading
import time
from pathlib import Path

from tests.bench import report
from tests.bench.csv_memory import generate
from tests.bench.run import log, post, write_body, write_config
from tests.bench.servers import Bridge, children
from tests.bench.wrk import Wrk

LOCATIONS = 500


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def tree_pss_mb(pid: int) -> float:
    """Sum of Pss over ``pid`` and its descendants, MiB."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def parse_rows(text: str) -> int:
    n = text.strip().upper()
    return int(float(n[:-1]) * {"K": 1e3, "M": 1e6}[n[-1]]) if n[-1] in "KM" else int(n)


def wait_ready(bridge, timeout: float) -> float:
    started = time.monotonic()
    bridge.wait_ready(timeout=timeout, path="/readyz")
    return time.monotonic() - started


def serving_maps(bridge, name: str) -> int:
    """How many workers map a file whose name contains ``name``."""
    count = 0
    for pid in bridge.worker_pids():
        try:
            count += name in Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            pass
    return count


def measure(rows: int, workers: int, tmp: Path, wrk: Wrk, baseline: float, opts) -> dict:
    products = rows // LOCATIONS
    csv_path = tmp / f"atp-{rows}.csv"
    started = time.monotonic()
    written = generate(csv_path, products, LOCATIONS, 1.0)
    log(f"{written:,} rows, {csv_path.stat().st_size / 2**20:,.0f} MB generated in "
        f"{time.monotonic() - started:.0f} s")
    body = write_body(tmp / f"body-{rows}.json", 50, 10, products)
    tables = tmp / f"tables-{rows}"
    config = write_config(tmp / f"scale-{rows}.yaml", csv_path.name)
    logfile = tmp / f"bridge-{rows}.log"
    bridge = Bridge(config, logfile, workers=workers, env={"ATP_BRIDGE_TABLE_DIR": str(tables)})
    out = {"rows": written, "products": products, "file_mb": csv_path.stat().st_size / 2**20}
    try:
        out["ready_s"] = wait_ready(bridge, 600)
        time.sleep(1.5)  # the log is written in batches (ATP_BRIDGE_LOG_FLUSH_MS)
        built = re.findall(r"built the table of .*? in ([0-9.]+)s", logfile.read_text())
        out["built_lines"], out["build_s"] = len(built), float(built[0]) if built else None
        post(bridge.url, body)
        wrk.run(bridge.url, body, 2.0)
        out["pss_mb"] = tree_pss_mb(bridge.proc.pid)
        out["pss_growth_mb"] = out["pss_mb"] - baseline
        out["table_mb"] = sum(f.stat().st_size for f in tables.glob("*.table")) / 2**20
        out["steady"] = wrk.run(bridge.url, body, opts.duration)
        log(f"{rows:,}: ready {out['ready_s']:.1f} s, build {out['build_s']} s, tree PSS "
            f"{out['pss_mb']:,.0f} MB (+{out['pss_growth_mb']:,.0f}), {out['steady'].rps:,.0f} rps "
            f"p99 {out['steady'].p99:.2f} ms")
        # restart: every worker killed at once; gunicorn's new ones map the table
        pattern = r"mapped the existing table of .*? in ([0-9.]+)s"
        seen = len(re.findall(pattern, logfile.read_text()))
        old_pids = bridge.worker_pids()
        for pid in old_pids:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while len(set(bridge.worker_pids()) - set(old_pids)) < workers:
            time.sleep(0.005)
        bridge.wait_ready(timeout=60, path="/readyz")
        out["restart_ready_s"] = time.monotonic() - killed
        deadline = time.monotonic() + 30
        while len(mapped := re.findall(pattern, logfile.read_text())[seen:]) < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"restarted workers did not map the table: {mapped}")
            time.sleep(0.2)
        out["map_s"] = max(map(float, mapped))
        log(f"{rows:,}: restart ready {out['restart_ready_s']:.2f} s, map {out['map_s']} s")
        out["reload"] = reload(bridge, wrk, body, csv_path, tables, 15 + 2.5 * (out["build_s"] or 10))
    finally:
        bridge.stop()
        csv_path.unlink()
        for f in tables.glob("*"):
            f.unlink()
    return out


def reload(bridge, wrk: Wrk, body: Path, csv_path: Path, tables: Path, seconds: float) -> dict:
    """Touch the file under load: one rebuild, swapped into every worker; latency and peak PSS."""
    (old,) = [f.name for f in tables.glob("*.table")]
    peak, stop = [tree_pss_mb(bridge.proc.pid)], threading.Event()

    def sample():
        while not stop.wait(0.25):
            peak.append(tree_pss_mb(bridge.proc.pid))
    sampler = threading.Thread(target=sample, daemon=True)
    load = wrk.start(bridge.url, body, seconds)
    sampler.start()
    time.sleep(1)
    os.utime(csv_path)
    touched, swapped = time.monotonic(), None
    while load.poll() is None and swapped is None:
        new = [f.name for f in tables.glob("*.table") if f.name != old]
        if new and serving_maps(bridge, new[0]) == len(bridge.worker_pids()):
            swapped = time.monotonic() - touched
        time.sleep(0.05)
    during = wrk.finish(load, seconds)
    stop.set()
    sampler.join()
    old_still_mapped = serving_maps(bridge, old)
    log(f"reload: every worker on the new table {swapped} s after the touch; p99 "
        f"{during.p99:.2f} ms, max {during.max:.1f} ms; peak PSS {max(peak):,.0f} MB; "
        f"old table still mapped by {old_still_mapped} worker(s)")
    return {"swapped_s": swapped, "during": during, "peak_pss_mb": max(peak),
            "old_still_mapped": old_still_mapped}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1M,10M,50M")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--dir", help="where the CSVs and tables go (default: a temp dir)")
    opts = parser.parse_args(argv)
    sizes = [parse_rows(r) for r in opts.rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="atp-scale-", dir=opts.dir) as name:
        tmp = Path(name)
        wrk = Wrk(tmp, 1, 8)
        (tmp / "tiny.csv").write_text("product,location,atp\n10000000,STORE00,1\n")
        tiny = Bridge(write_config(tmp / "tiny.yaml", "tiny.csv"), tmp / "tiny.log",
                      workers=opts.workers, env={"ATP_BRIDGE_TABLE_DIR": str(tmp / "tables-tiny")})
        try:
            tiny.wait_ready(path="/readyz")
            wrk.run(tiny.url, write_body(tmp / "tiny.json", 1, 1, 1), 2.0)
            baseline = tree_pss_mb(tiny.proc.pid)
        finally:
            tiny.stop()
        log(f"1-row file, {opts.workers} workers: tree PSS {baseline:,.0f} MB")
        results = [measure(rows, opts.workers, tmp, wrk, baseline, opts) for rows in sizes]
    print(report.table(
        ["rows", "products x locations", "CSV MB", "table MB", "build s", "ready s",
         "tree PSS growth MB", "restart ready s", "500 pairs rps", "p50 ms", "p99 ms",
         "reload: all workers swapped s", "reload p99 ms", "reload peak PSS growth MB"],
        [[f"{r['rows']:,}", f"{r['products']:,} x {LOCATIONS}", f"{r['file_mb']:,.0f}",
          f"{r['table_mb']:,.0f}", f"{r['build_s']}", f"{r['ready_s']:.1f}",
          f"{r['pss_growth_mb']:,.0f}", f"{r['restart_ready_s']:.2f}", f"{r['steady'].rps:,.0f}",
          f"{r['steady'].p50:.2f}", f"{r['steady'].p99:.2f}",
          f"{r['reload']['swapped_s']:.1f}" if r["reload"]["swapped_s"] else "not seen",
          f"{r['reload']['during'].p99:.2f}", f"{r['reload']['peak_pss_mb'] - baseline:,.0f}"]
         for r in results]))
    print(f"baseline (1-row file, {opts.workers} workers) tree PSS {baseline:,.0f} MB")


if __name__ == "__main__":
    main()
