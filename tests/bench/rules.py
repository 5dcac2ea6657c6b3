"""The ATP rules' cost: default config vs 1,000 bundles + a 100,000-row safety-stock file.

    python -m tests.bench.rules [--rounds N] [--duration S]

From the repository root. Both servers (1 worker each) serve the comparison
CSV of ``tests.bench.run`` (1,000 products x 20 stores). The rules server adds
``safety_stock.file`` with 100,000 pair rules (5,000 product_ids x 20 stores,
the request's products among them), 1,000 bundles of 3 components each, and
caps. Requests are 50 products x 10 stores (500 pairs): without bundles, and
with 2 or 10 of the 50 products bundles (their components are asked too:
10 bundles of 3 add up to 30 products, 690 pairs asked). Rounds alternate between the servers;
prints the medians and rules / default, in requests per second and in the
worker's CPU time per request (steadier on a busy machine, tests/bench/cpu.py).
Loopback only, bounded in time.
"""
from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import orjson

from statistics import median

from tests.bench import report
from tests.bench.cpu import measure
from tests.bench.csv_memory import generate
from tests.bench.run import UNIVERSE, log, write_body, write_config
from tests.bench.servers import Bridge
from tests.bench.wrk import Wrk


def pid(i: int) -> str:
    return f"ns-{10_000_000 + i}"


def write_rules(tmp: Path) -> Path:
    """The rules config: the bench CSV plus safety stock file, bundles and caps."""
    rng = random.Random(15)
    with open(tmp / "safety.csv", "w") as f:
        f.write("product,location,units\n")
        for i in range(5_000):
            for j in range(20):
                f.write(f"{pid(i)},STORE{j:02d},{rng.randint(0, 3)}\n")
    with open(tmp / "bundles.csv", "w") as f:
        f.write("bundle,component,quantity\n")
        for k in range(1_000):
            for c in rng.sample(range(UNIVERSE[0]), 3):
                f.write(f"kit-{k},{10_000_000 + c},{rng.randint(1, 3)}\n")
    path = tmp / "rules.yaml"
    path.write_text("safety_stock: {default: 1, file: safety.csv}\n"
                    "bundles: {file: bundles.csv}\n"
                    "caps: {default: 1000, locations: {STORE00: 5}}\n"
                    "adapters:\n  - name: bench\n    type: csv\n    path: bench.csv\n")
    return path


def bundle_body(path: Path, plain: Path, n: int) -> Path:
    """The 500-pair request with ``n`` of its 50 products replaced by bundles."""
    doc = orjson.loads(plain.read_bytes())
    for k, product in enumerate(doc["products"][:n]):
        product["product_id"] = product["external_identifier"] = f"kit-{k * 97}"
    path.write_bytes(orjson.dumps(doc))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atp-rules-") as name:
        tmp = Path(name)
        wrk = Wrk(tmp, 1, opts.connections)
        generate(tmp / "bench.csv", *UNIVERSE, 1.0)
        plain_cfg, rules_cfg = write_config(tmp / "bench.yaml", "bench.csv"), write_rules(tmp)
        plain = write_body(tmp / "body-50x10.json", 50, 10, UNIVERSE[0])
        few = bundle_body(tmp / "body-2-kits.json", plain, 2)
        kits = bundle_body(tmp / "body-10-kits.json", plain, 10)
        default, rules = Bridge(plain_cfg, tmp / "default.log"), Bridge(rules_cfg, tmp / "rules.log")
        try:
            default.wait_ready(path="/readyz")
            rules.wait_ready(path="/readyz", timeout=60)
            got = rules.post(kits.read_bytes(), headers={"Content-Type": "application/json"}).json()
            assert len(got["availabilities"]) == 500, got
            cases = [("default config, 500 pairs", default, plain),
                     ("rules, 500 pairs, no bundle asked", rules, plain),
                     ("rules, 500 pairs, 2 of 50 products bundles", rules, few),
                     ("rules, 500 pairs, 10 of 50 products bundles", rules, kits)]
            for _, server, body in cases:
                wrk.run(server.url, body, 2.0)
            runs: dict[str, list] = {label: [] for label, *_ in cases}
            cpu: dict[str, list] = {label: [] for label, *_ in cases}
            for r in range(opts.rounds):
                for label, server, body in cases[:: 1 if r % 2 == 0 else -1]:
                    res, us = measure(wrk, server, body, opts.duration)
                    runs[label].append(res)
                    cpu[label].append(us)
                    log(f"{label}: round {r + 1}: {res.rps:,.0f} rps, {us:.0f} us CPU/request")
        finally:
            default.stop()
            rules.stop()
    base = report.med(runs[cases[0][0]], "rps")
    base_cpu = median(cpu[cases[0][0]])
    rows = [[label, f"{report.med(rs, 'rps'):,.0f}", f"{report.med(rs, 'rps') / base:.2f}",
             f"{median(cpu[label]):.0f}", f"{base_cpu / median(cpu[label]):.2f}",
             " ".join(f"{x.rps:,.0f}" for x in rs)]
            for label, rs in runs.items()]
    print(report.table(["case", "rps (median)", "rps vs default", "CPU us/request",
                        "default CPU / this CPU", "rps per round"], rows))


if __name__ == "__main__":
    main()
