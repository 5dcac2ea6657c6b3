"""Big catalogues: the shared CSV table at 1M, 10M and 50M rows (a script, not a test).

    python -m tests.bench.scale [--rows 1M,10M,50M] [--workers 4] [--dir DIR] [--rates 0.5]
                                [--reloads 3] [--nice N] [--idle-s S]

For each size, a CSV of P products x 500 locations is generated in DIR
(default: a temporary directory; 50M rows is ~1 GB: check ``df -h`` first),
and ``atp-bridge serve --workers N`` is started on it with an empty table
directory. Measured: build time (the builder's own log line), ready time
(``/readyz`` 200 after start), the PSS of the whole serving tree (master,
workers, any builder; ``/proc/<pid>/smaps_rollup``, shared pages counted once)
minus the same tree serving a 1-row file, restart-ready time (every worker
SIGKILLed; ``/readyz`` 200 again once gunicorn's new workers mapped the
table), 500-pair throughput and latency under wrk, and reloads under a paced
load (:mod:`tests.bench.paced`, ``--rates`` x the measured rps; ``--reloads``
each): the first row's value changed in place, then the time until the new
table is renamed into place (the build) and from there until every worker
maps it and no longer the old one (the swap), latency during the reload
against steady state under the same load (10 s before the change plus, from
1 s after the swap, as long as the reload took: spikes of this machine's own
fall in windows of either kind alike), every answer's new value, and the peak growth of the tree's PSS, of its anonymous memory (the
builder's own) and of anonymous memory plus the table files (a memory-backed
table directory counts them).
Files are deleted afterwards.
"""
from __future__ import annotations

import argparse

import orjson
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
from tests.bench.servers import Bridge
from tests.bench.paced import PacedLoad
from tests.bench.wrk import Wrk

LOCATIONS = 500


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from one scan of /proc (a scan per node costs a core)."""
    parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parent.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, ()))
    return out


def tree_mb(pid: int) -> dict:
    """Sums of Pss and Anonymous (MiB) over ``pid`` and its descendants (smaps_rollup)."""
    total = {"Pss": 0, "Anonymous": 0}
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                key = line.split(":", 1)[0]
                if key in total:
                    total[key] += int(line.split()[1])
        except OSError:
            pass
    return {"pss": total["Pss"] / 1024, "anon": total["Anonymous"] / 1024}


def tree_pss_mb(pid: int) -> float:
    """Sum of Pss over ``pid`` and its descendants, MiB."""
    return tree_mb(pid)["pss"]


def parse_rows(text: str) -> int:
    n = text.strip().upper()
    return int(float(n[:-1]) * {"K": 1e3, "M": 1e6}[n[-1]]) if n[-1] in "KM" else int(n)


def wait_ready(bridge, timeout: float) -> float:
    started = time.monotonic()
    bridge.wait_ready(timeout=timeout, path="/readyz")
    return time.monotonic() - started


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
    env = {"ATP_BRIDGE_TABLE_DIR": str(tables)}
    if opts.nice is not None:
        env["ATP_BRIDGE_RELOAD_NICE"] = str(opts.nice)
    if opts.idle_s is not None:
        env["ATP_BRIDGE_RELOAD_IDLE_S"] = opts.idle_s
    bridge = Bridge(config, logfile, workers=workers, env=env)
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
        marker = tmp / "marker.json"
        marker.write_bytes(orjson.dumps({"products": [{"product_id": MARKER[0], "external_identifier":
                                                       MARKER[0]}], "fulfillment_locations": [MARKER[1]]}))
        out["reloads"] = [reload(bridge, body, csv_path, tables, out["steady"].rps * fraction,
                                 60 + 8 * (out["build_s"] or 10), marker)
                          for fraction in opts.rates for _ in range(opts.reloads)]
        time.sleep(1.5)  # the log is written in batches
        builders = re.findall(r"built the table of [^\n]*\(builder: ([^)]+)\)", logfile.read_text())
        for x, how in zip(out["reloads"], builders[1:]):  # the first line is the first load's
            x["builder"] = how
    finally:
        bridge.stop()
        csv_path.unlink()
        for f in tables.glob("*"):
            f.unlink()
    return out


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.glob("*") if f.is_file()) / 2**20


MARKER = ("10000000", "STORE00")  # the file's first row: its value changes on each reload


def bump_marker(csv_path: Path) -> int:
    """Give the first data row a new value of the same width in place; the new value."""
    with open(csv_path, "r+b") as f:
        header = f.readline()
        line = f.readline()
        old = line.rstrip(b"\n").rsplit(b",", 1)[1]
        new = str((int(old) + 1) % 10 ** len(old)).zfill(len(old)).encode()
        f.seek(len(header) + len(line) - 1 - len(old))
        f.write(new)
    return int(new)


def marker_value(bridge, body: Path) -> int:
    return post(bridge.url, body).json()["availabilities"][0]["atp"]


def reload(bridge, body: Path, csv_path: Path, tables: Path, rate: float, limit: float,
           marker_body: Path, steady_s: float = 10.0) -> dict:
    """Change the file under a paced load of ``rate`` rps; when the new table was renamed into
    place (build finished), when every worker maps it (and the old one no longer), latency
    during the reload (from the change to the swap) and in steady state (``steady_s`` before
    the change plus as long as the reload took, from 1 s after the swap: as many seconds as
    the reload, or more, under the same load), and peak memory during."""
    (old,) = [f.name for f in tables.glob("*.table")]
    pid = bridge.proc.pid
    base = {**tree_mb(pid), "dir": dir_mb(tables)}
    peak, stop = dict(base), threading.Event()

    def sample():
        while not stop.wait(0.25):
            now, files = tree_mb(pid), dir_mb(tables)
            peak["pss"], peak["anon"] = max(peak["pss"], now["pss"]), max(peak["anon"], now["anon"])
            peak["total"] = max(peak.get("total", 0), now["anon"] + files)
    load = PacedLoad(bridge.url + "/availabilities", body, rate).start()
    # sampled all along: its reads of the workers' smaps cost them time, in either window alike
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(steady_s + 1)
    touched = time.monotonic()
    value = bump_marker(csv_path)
    built = swapped = None
    while time.monotonic() - touched < limit and swapped is None:
        new = [f.name for f in tables.glob("*.table") if f.name != old]
        if new and built is None:
            built = time.monotonic()
        if new and all(set(re.findall(r"[^/\s]+\.table", Path(f"/proc/{w}/maps").read_text()))
                       == {new[0]} for w in bridge.worker_pids()):
            swapped = time.monotonic()
        time.sleep(0.01)
    end = swapped or time.monotonic()
    after = (end + 1, end + 1 + (end - touched))
    time.sleep(after[1] - time.monotonic() + 0.5)
    load.stop()
    stop.set()
    sampler.join()
    answers = {marker_value(bridge, marker_body) for _ in range(4 * len(bridge.worker_pids()))}
    out = {"steady": load.pooled([(touched - steady_s, touched), after]),
           "during": load.window(touched, end),
           "build_s": built - touched if built else None,
           "swap_s": swapped - built if swapped and built else None,
           "answers_new": answers == {value}, "errors": load.errors, "rate": rate,
           "peak_pss_growth": peak["pss"] - base["pss"], "peak_anon_growth": peak["anon"] - base["anon"],
           "peak_total_growth": peak.get("total", base["anon"] + base["dir"]) - base["anon"] - base["dir"],
           "table_mb": base["dir"]}
    out["p99_ratio"] = out["during"]["p99"] / out["steady"]["p99"]
    marks = {"built": built, "swapped": swapped}
    buckets = []
    for k in range(-int(steady_s), int(after[1] - touched) + 1):  # one p99 per second
        w = load.window(touched + k, touched + k + 1)
        events = "".join(f" <{name}>" for name, t in marks.items()
                         if t is not None and touched + k <= t < touched + k + 1)
        buckets.append(f"{k:+d}s {w['p99']:.0f}{events}")
    log("reload p99 ms per second (0 = the change): " + ", ".join(buckets))
    seconds = (lambda v: "not seen" if v is None else f"{v:.2f} s")
    log(f"reload at {rate:,.0f} rps: build {seconds(out['build_s'])} after the change, every worker "
        f"swapped {seconds(out['swap_s'])} after the build; p50/p99 steady {out['steady']['p50']:.2f}/"
        f"{out['steady']['p99']:.2f} ms, during {out['during']['p50']:.2f}/{out['during']['p99']:.2f} "
        f"ms (max {out['during']['max']:.1f}, p99 x{out['p99_ratio']:.2f}); peak growth: tree PSS "
        f"{out['peak_pss_growth']:,.0f} MB, anonymous {out['peak_anon_growth']:,.0f} MB, anonymous + "
        f"table files {out['peak_total_growth']:,.0f} MB (one table {out['table_mb']:,.0f} MB); every "
        f"answer new: {out['answers_new']}")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1M,10M,50M")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--dir", help="where the CSVs and tables go (default: a temp dir)")
    parser.add_argument("--rates", default="0.5", help="paced load during the reload, as fractions "
                        "of the measured 500-pair rps (comma-separated: one reload each)")
    parser.add_argument("--reloads", type=int, default=3, help="reloads per rate (default 3)")
    parser.add_argument("--nice", type=int, help="the reload builder's niceness "
                        "(ATP_BRIDGE_RELOAD_NICE; default: the adapter's)")
    parser.add_argument("--idle-s", help="how long the reload builder may run in the idle "
                        "scheduling class (ATP_BRIDGE_RELOAD_IDLE_S; 0: never; default: the adapter's)")
    opts = parser.parse_args(argv)
    sizes = [parse_rows(r) for r in opts.rows.split(",")]
    opts.rates = [float(x) for x in opts.rates.split(",")]
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
         "tree PSS growth MB", "restart ready s", "500 pairs rps", "p50 ms", "p99 ms"],
        [[f"{r['rows']:,}", f"{r['products']:,} x {LOCATIONS}", f"{r['file_mb']:,.0f}",
          f"{r['table_mb']:,.0f}", f"{r['build_s']}", f"{r['ready_s']:.1f}",
          f"{r['pss_growth_mb']:,.0f}", f"{r['restart_ready_s']:.2f}", f"{r['steady'].rps:,.0f}",
          f"{r['steady'].p50:.2f}", f"{r['steady'].p99:.2f}"] for r in results]))
    fmt = (lambda v: f"{v:.2f}" if v is not None else "not seen")
    print(report.table(
        ["rows", "builder", "paced rps", "change -> built s", "built -> every worker s",
         "steady p50 / p99 ms", "during p50 / p99 ms", "during / steady p50, p99", "during max ms",
         "every answer new", "peak growth: tree PSS / anonymous / anonymous + table files MB"],
        [[f"{r['rows']:,}", x.get("builder", "?"), f"{x['rate']:,.0f}", fmt(x["build_s"]),
          fmt(x["swap_s"]), f"{x['steady']['p50']:.2f} / {x['steady']['p99']:.2f}",
          f"{x['during']['p50']:.2f} / {x['during']['p99']:.2f}",
          f"{x['during']['p50'] / x['steady']['p50']:.2f}, {x['p99_ratio']:.2f}",
          f"{x['during']['max']:.1f}", str(x["answers_new"]),
          f"{x['peak_pss_growth']:,.0f} / {x['peak_anon_growth']:,.0f} / "
          f"{x['peak_total_growth']:,.0f}"] for r in results for x in r["reloads"]]))
    for r in results:
        ratios = sorted(x["p99_ratio"] for x in r["reloads"])
        print(f"{r['rows']:,} rows: p99 during / steady over {len(ratios)} reloads: "
              f"{', '.join(f'{v:.2f}' for v in ratios)} (median {ratios[len(ratios) // 2]:.2f})")
    print(f"baseline (1-row file, {opts.workers} workers) tree PSS {baseline:,.0f} MB")


if __name__ == "__main__":
    main()
