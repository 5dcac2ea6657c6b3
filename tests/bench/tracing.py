"""Tracing on vs off: what spans cost a request, same load, alternated.

    python -m tests.bench.tracing [--rounds N] [--duration S] [--connections C]
                                  [--sample RATIO] [--adapters csv,rest]

Two ``atp-bridge serve`` processes (1 worker each) serve the same config, one
with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a loopback OTLP/HTTP receiver
that counts and discards (tests/otlp_receiver.py in a process of its own, so
that its work does not slow the ERP stand-in here), one with no ``OTEL_*``. Two configs: the comparison CSV of ``tests.bench.run`` (two spans
per request: the request and the adapter) and a REST adapter asking the ERP
stand-in (plus one CLIENT span per ERP call, with ``traceparent`` sent).
Sizes 2x3 (6 pairs) and 50x10 (500 pairs). Per row: the median requests per
second of each, and the worker's CPU time per request (utime + stime from
/proc over the run, divided by the requests wrk counted; the span exporter
runs in the worker, so its encoding and sending are in it). Loopback only,
bounded in time. ``--sample 0.01`` keeps 1% of the traces on the traced
server (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``): what sampling saves.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from statistics import median

from tests.bench import report
from tests.bench.cpu import measure
from tests.bench.csv_memory import generate
from tests.bench.run import UNIVERSE, log, post, write_body, write_config
from tests.bench.servers import Bridge
from tests.bench.wrk import Wrk
from tests.erp_server import FakeErp
from tests.serve import ROOT, free_port, subprocess_env

SIZES = [(2, 3), (50, 10)]


@contextmanager
def receiver_process():
    """The discarding receiver in its own process; yields its endpoint and, after
    the block, leaves ``(posts, bad)`` in the list it yields second."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.otlp_receiver", str(port)], cwd=ROOT,
                            env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    counts: list = []
    try:
        proc.stdout.readline()  # "listening ...": it accepts from now on
        yield f"http://127.0.0.1:{port}", counts
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        fields = dict(kv.split("=") for kv in out.split())
        counts.extend([int(fields.get("posts", 0)), int(fields.get("bad", 0))])


def rest_config(path: Path, erp_url: str) -> Path:
    path.write_text(f"adapters:\n  - name: erp\n    type: rest\n    url: {erp_url}/atp\n")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--sample", type=float, help="trace sampling ratio of the traced server")
    parser.add_argument("--adapters", default="csv,rest", help="which configs: csv, rest or both")
    opts = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="atp-tracing-") as name, \
            receiver_process() as (endpoint, counts), FakeErp() as erp:
        tmp = Path(name)
        wrk = Wrk(tmp, 1, opts.connections)
        generate(tmp / "bench.csv", *UNIVERSE, 1.0)
        ids = [str(10_000_000 + i) for i in range(UNIVERSE[0])]
        erp.stock = {(p, f"STORE{j:02d}"): 3 for p in ids for j in range(UNIVERSE[1])}
        configs = {"csv": write_config(tmp / "csv.yaml", "bench.csv"),
                   "rest": rest_config(tmp / "rest.yaml", erp.url)}
        bodies = {(p, l): write_body(tmp / f"body-{p}x{l}.json", p, l, UNIVERSE[0]) for p, l in SIZES}
        on_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        if opts.sample is not None:
            on_env.update(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG=str(opts.sample))
        for kind in opts.adapters.split(","):
            config = configs[kind]
            off = Bridge(config, tmp / f"{kind}-off.log")
            on = Bridge(config, tmp / f"{kind}-on.log", env=on_env)
            try:
                off.wait_ready(path="/readyz")
                on.wait_ready(path="/readyz")
                for (n_p, n_l), body in bodies.items():
                    post(off.url, body), post(on.url, body)
                    for server in (off, on):
                        wrk.run(server.url, body, 2.0)  # warm up
                    runs = {"off": [], "on": []}
                    for r in range(opts.rounds):
                        order = [("off", off), ("on", on)][:: 1 if r % 2 == 0 else -1]
                        for label, server in order:
                            res, cpu = measure(wrk, server, body, opts.duration)
                            runs[label].append((res.rps, cpu))
                            erp.log.clear()  # it keeps every request it saw
                            log(f"{kind} {n_p}x{n_l}: round {r + 1} {label}: {res.rps:,.0f} rps, "
                                f"{cpu:,.0f} us CPU/request")
                    rps = {k: median(x[0] for x in v) for k, v in runs.items()}
                    cpu = {k: median(x[1] for x in v) for k, v in runs.items()}
                    rows.append([kind, f"{n_p}x{n_l}", f"{n_p * n_l:,}", f"{rps['off']:,.0f}", f"{rps['on']:,.0f}",
                                 f"{rps['on'] / rps['off']:.3f}", f"{cpu['off']:,.0f}", f"{cpu['on']:,.0f}",
                                 f"{cpu['on'] - cpu['off']:+,.0f}"])
            finally:
                off.stop()
                on.stop()
    posts, bad = counts
    if (posts == 0 and not opts.sample) or bad:
        raise SystemExit(f"the receiver got {posts} exports, {bad} bad: tracing was not measured")
    print(report.table(["adapter", "size", "pairs", "off rps", "on rps", "on / off",
                        "off CPU us/req", "on CPU us/req", "cost us/req"], rows))


if __name__ == "__main__":
    main()
