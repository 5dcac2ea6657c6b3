"""Benchmark atp-bridge against the floor; write docs/benchmarks.md and docs/benchmarks.png.

    python -m tests.bench.run [--quick] [--duration S] [--rounds N] [--profile] [--compare-only]

From the repository root. Everything runs on 127.0.0.1 and every load run is
bounded by ``--duration``. Sections: (1) floor vs atp-bridge (1 worker each,
same gunicorn settings, same wrk load) at 2x3, 50x10 and 500x20 pairs,
alternated round by round, median of the rounds; (2) atp-bridge with 1, 2 and
4 workers at 500 pairs; (3) a 1,000,000-row CSV: worker RSS growth, time to
ready, and latency while the file is replaced under load; (4) with
``--profile``, py-spy on the worker at 500 and 10,000 pairs; (5) latency with
200 idle and 50 slowloris connections open (``tests.bench.hostile``).
"""
from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

from atp_bridge import gunicorn_conf
from tests.bench import hostile, profile, report
from tests.bench.csv_memory import generate
from tests.bench.servers import Bridge, Floor, status_mb
from tests.bench.wrk import Wrk
from tests.serve import ROOT

SIZES = [(2, 3), (50, 10), (500, 20)]
UNIVERSE = (1_000, 20)  # products x locations of the comparison CSV (20,000 rows)
BIG = (50_000, 20)  # the 1M-row CSV
JSON = {"Content-Type": "application/json"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_config(path: Path, csv_name: str) -> Path:
    """One CSV adapter, every other key at its default."""
    path.write_text(f"adapters:\n  - name: bench\n    type: csv\n    path: {csv_name}\n")
    return path


def write_body(path: Path, n_products: int, n_locations: int, universe: int) -> Path:
    """A request for ``n_products`` random known products x the first ``n_locations`` stores.
    ``product_id`` differs from ``external_identifier`` so a server matching on the wrong one shows."""
    rng = random.Random(n_products * 1000 + n_locations)
    ids = [str(10_000_000 + i) for i in rng.sample(range(universe), n_products)]
    path.write_bytes(orjson.dumps({
        "products": [{"product_id": f"ns-{i}", "external_identifier": i} for i in ids],
        "fulfillment_locations": [f"STORE{j:02d}" for j in range(n_locations)]}))
    return path


def post(url: str, body: Path) -> requests.Response:
    r = requests.post(url + "/availabilities", data=body.read_bytes(), headers=JSON, timeout=30)
    if r.status_code != 200 or r.headers.get("X-ATP-Degraded"):
        raise SystemExit(f"{url}: {r.status_code} degraded={r.headers.get('X-ATP-Degraded')}: {r.text[:300]}")
    return r


def check_same_answers(floor, bridge, body: Path, pairs: int) -> None:
    """Abort unless both servers give the same rows for ``body``: apples to apples."""
    a = orjson.loads(post(floor.url, body).content)["availabilities"]
    b = orjson.loads(post(bridge.url, body).content)["availabilities"]
    if len(a) != pairs or a != b:
        diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        raise SystemExit(f"floor and atp-bridge disagree on {body.name} ({len(a)} vs {len(b)} rows, "
                         f"first difference at row {diff}: {a[diff:diff + 1]} vs {b[diff:diff + 1]})")
    if not any(row["atp"] for row in b):
        raise SystemExit(f"{body.name}: every atp is 0; the CSV does not cover the request")


def compare(wrk: Wrk, floor, bridge, bodies: dict, opts) -> list[dict]:
    out = []
    for (n_p, n_l), body in bodies.items():
        size, pairs = f"{n_p}x{n_l}", n_p * n_l
        check_same_answers(floor, bridge, body, pairs)
        for server in (floor, bridge):
            wrk.run(server.url, body, opts.warmup)
        runs = {"floor": [], "bridge": []}
        for r in range(opts.rounds):  # alternate, and flip the order each round against drift
            order = [("floor", floor), ("bridge", bridge)][:: 1 if r % 2 == 0 else -1]
            for name, server in order:
                runs[name].append(res := wrk.run(server.url, body, opts.duration))
                log(f"{size}: round {r + 1} {name}: {res.rps:,.0f} rps, p50 {res.p50:.2f} ms, "
                    f"p99 {res.p99:.2f} ms{' errors ' + str(res.errors) if res.errors else ''}")
        out.append({"size": size, "pairs": pairs, **runs})
    return out


def profiles(wrk: Wrk, bridge, bodies: dict, tmp: Path, seconds: float) -> dict:
    out = {}
    worker = bridge.worker_pids()[0]
    for (n_p, n_l), body in bodies.items():
        if n_p * n_l < 500:
            continue
        load = wrk.start(bridge.url, body, seconds + 2)
        time.sleep(1)
        raw = profile.record(worker, seconds, tmp / f"pyspy-{n_p}x{n_l}.txt")
        wrk.finish(load, seconds + 2)
        out[f"{n_p * n_l:,}"] = summary = profile.summarize(raw)
        log(f"profile {n_p}x{n_l}: {summary['samples']} samples; top: {summary['inclusive'][:6]}")
    return out


def scaling(wrk: Wrk, config: Path, body: Path, tmp: Path, opts) -> list[dict]:
    out = []
    for workers in (1, 2, 4):
        bridge = Bridge(config, tmp / f"bridge-{workers}w.log", workers=workers)
        try:
            bridge.wait_ready(path="/readyz")
            connections = wrk.connections * workers  # as many connections per worker as with one
            wrk.run(bridge.url, body, opts.warmup, connections)
            runs = [wrk.run(bridge.url, body, opts.duration, connections) for _ in range(opts.rounds)]
        finally:
            bridge.stop()
        out.append({"workers": workers, "connections": connections, "runs": runs})
        log(f"{workers} worker(s): {report.med(runs, 'rps'):,.0f} rps")
    return out


def worker_memory(bridge) -> tuple[float, float]:
    (pid,) = bridge.worker_pids()
    return status_mb(pid, "VmRSS"), status_mb(pid, "VmHWM")


def loaded_at(bridge) -> str | None:
    return requests.get(bridge.url + "/readyz", timeout=30).json()["adapters"]["bench"]["loaded_at"]


def rewrite_plus_one(src: Path, dst: Path) -> None:
    """The same table with every atp + 1, written beside ``src`` for an atomic rename."""
    with open(src) as f, open(dst, "w") as out:
        out.write(next(f))
        out.writelines(f"{line.rsplit(',', 1)[0]},{int(line.rsplit(',', 1)[1]) + 1}\n" for line in f)


def big_csv(wrk: Wrk, tmp: Path, opts) -> dict:
    tiny_csv, big = tmp / "tiny.csv", tmp / "big.csv"
    generate(tiny_csv, 10, 2, 1.0)
    rows = generate(big, *BIG, 1.0)
    body = write_body(tmp / "big-500.json", 50, 10, BIG[0])
    out = {"rows": rows, "products": BIG[0], "locations": BIG[1], "file_mb": big.stat().st_size / 2**20}
    for name, csv_name in (("tiny", tiny_csv.name), ("big", big.name)):
        bridge = Bridge(write_config(tmp / f"{name}.yaml", csv_name), tmp / f"bridge-{name}.log")
        try:
            bridge.wait_ready(path="/readyz")
            out[f"ready_{name}_s" if name == "tiny" else "ready_s"] = time.monotonic() - bridge.started
            wrk.run(bridge.url, body, opts.warmup)  # like-for-like: both measured warm
            out[f"rss_{name}"], out[f"hwm_{name}"] = worker_memory(bridge)
            log(f"{name} CSV: /readyz 200 {out['ready_tiny_s' if name == 'tiny' else 'ready_s']:.2f} s "
                f"after start; worker RSS {out[f'rss_{name}']:.1f} MB")
            if name == "big":
                out["reload"] = reload(wrk, bridge, big, body, opts)
        finally:
            bridge.stop()
    return out


def reload(wrk: Wrk, bridge, big: Path, body: Path, opts) -> dict:
    """Replace the 1M-row file (temp + rename) during a load run; compare with a run without."""
    new = big.with_suffix(".next")
    rewrite_plus_one(big, new)
    before = orjson.loads(post(bridge.url, body).content)["availabilities"]
    first_load = loaded_at(bridge)
    base = wrk.run(bridge.url, body, opts.reload_seconds)
    load = wrk.start(bridge.url, body, opts.reload_seconds)
    time.sleep(1)
    os.replace(new, big)
    replaced = time.monotonic()
    reload_s = None
    while load.poll() is None:
        if loaded_at(bridge) != first_load:
            reload_s = time.monotonic() - replaced
            break
        time.sleep(0.1)
    during = wrk.finish(load, opts.reload_seconds)
    after = orjson.loads(post(bridge.url, body).content)["availabilities"]
    changed = all(a["atp"] == b["atp"] + 1 for a, b in zip(after, before)) and len(after) == len(before)
    _, hwm_after = worker_memory(bridge)
    log(f"reload: served {reload_s} s after the rename; max latency {base.max:.1f} ms without, "
        f"{during.max:.1f} ms with; answers changed: {changed}")
    return {"base": base, "during": during, "reload_s": reload_s, "changed": changed,
            "hwm_after": hwm_after}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s rounds, 1 round")
    parser.add_argument("--duration", type=float, help="seconds per measured wrk run (default 5, quick 1)")
    parser.add_argument("--rounds", type=int, help="alternated rounds per size (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--profile", action="store_true", help="also py-spy the worker at 500 and 10,000 pairs")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--compare-only", action="store_true",
                        help="only the floor comparison (section 1); print, leave docs/ alone")
    opts = parser.parse_args(argv)
    opts.duration = opts.duration or (1.0 if opts.quick else 5.0)
    opts.rounds = opts.rounds or (1 if opts.quick else 3)
    opts.warmup = 1.0 if opts.quick else 2.0
    opts.reload_seconds = 12.0 if opts.quick else 15.0
    command = "python -m tests.bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    settings = {"loadavg": os.getloadavg()[0], "wrk": wrk_version,
                "gunicorn": f"1 worker, worker_class={gunicorn_conf.worker_class}, worker_connections="
                            f"{gunicorn_conf.worker_connections}, keepalive={gunicorn_conf.keepalive}",
                "load": f"wrk -t{opts.threads} -c{opts.connections}, {opts.rounds} alternated round(s) of "
                        f"{opts.duration:g} s per server after a {opts.warmup:g} s warm-up, medians reported"}

    results = {}
    with tempfile.TemporaryDirectory(prefix="atp-bench-") as name:
        tmp = Path(name)
        wrk = Wrk(tmp, opts.threads, opts.connections)
        generate(tmp / "bench.csv", *UNIVERSE, 1.0)
        config = write_config(tmp / "bench.yaml", "bench.csv")
        bodies = {(p, l): write_body(tmp / f"body-{p}x{l}.json", p, l, UNIVERSE[0]) for p, l in SIZES}
        floor = Floor(tmp / "bench.csv", tmp / "floor.log")
        bridge = Bridge(config, tmp / "bridge.log")
        try:
            floor.wait_ready()
            bridge.wait_ready(path="/readyz")
            log(f"floor on {floor.url}, atp-bridge on {bridge.url}")
            results["compare"] = compare(wrk, floor, bridge, bodies, opts)
            if opts.profile:
                results["profiles"] = profiles(wrk, bridge, bodies, tmp, max(3.0, 2 * opts.duration))
        finally:
            floor.stop()
            bridge.stop()
        if opts.compare_only:
            print(report.compare_table(results["compare"]))
            return
        results["scaling"] = scaling(wrk, config, bodies[(50, 10)], tmp, opts)
        results["big"] = big_csv(wrk, tmp, opts)
        log("slow and idle clients")
        results["hostile"] = hostile.measure(tmp)

    print(report.compare_table(results["compare"]), "", report.scaling_table(results["scaling"]), "",
          report.big_table(results["big"]), "", hostile.table(results["hostile"]), sep="\n")
    if results.get("profiles"):
        print("", report.profile_tables(results["profiles"]), sep="\n")
    if not opts.no_docs:
        doc = ROOT / "docs" / "benchmarks.md"
        old = doc.read_text() if doc.exists() else None
        doc.write_text(report.render(results, settings, command.strip(), old))
        report.chart(results["compare"], ROOT / "docs" / "benchmarks.png")
        log(f"wrote {doc} and {doc.with_suffix('.png')}")


if __name__ == "__main__":
    main()
