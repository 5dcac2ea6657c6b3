"""A/B: ``atp-bridge serve`` at another commit vs this checkout, same load, alternated.

    python -m tests.bench.ab [--against REV] [--rounds N] [--duration S]

For a change to the serving model or the request path, where the floor moves
with the change (it runs under the same gunicorn settings) and the ratio alone
cannot show a loss. REV (default ``HEAD~1``) is checked out in a temporary git
worktree and served from there, with this machine's installed packages; both
serve the comparison CSV of ``tests.bench.run`` with 1 worker. Prints one row
per size: the two medians and new / old, of requests per second and of the
worker's CPU time per request (tests/bench/cpu.py: steadier than requests per
second on a machine others are loading). Loopback only, bounded in time.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from statistics import median

from tests.bench import report
from tests.bench.cpu import measure
from tests.bench.csv_memory import generate
from tests.bench.run import SIZES, UNIVERSE, check_same_answers, log, write_body, write_config
from tests.bench.servers import Bridge
from tests.bench.wrk import Wrk
from tests.serve import ROOT


class OldBridge(Bridge):
    """``atp-bridge serve`` from the worktree at ``tree`` (first on PYTHONPATH)."""

    def __init__(self, tree: Path, config, log_path: Path):
        self.started = 0.0
        self.log_path = log_path
        from tests.serve import BridgeProcess

        BridgeProcess.__init__(self, config, workers=1, output=log_path, extra_pythonpath=[tree])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="atp-ab-") as name:
        tmp = Path(name)
        tree = tmp / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), opts.against],
                       check=True, capture_output=True)
        # the editable install maps atp_bridge.adapters to THIS checkout's adapters/: in the old
        # tree, found first on PYTHONPATH, atp_bridge/adapters must be its own adapters/
        (tree / "atp_bridge" / "adapters").symlink_to(tree / "adapters")
        try:
            wrk = Wrk(tmp, 1, opts.connections)
            generate(tmp / "bench.csv", *UNIVERSE, 1.0)
            config = write_config(tmp / "bench.yaml", "bench.csv")
            bodies = {(p, l): write_body(tmp / f"body-{p}x{l}.json", p, l, UNIVERSE[0]) for p, l in SIZES}
            old, new = OldBridge(tree, config, tmp / "old.log"), Bridge(config, tmp / "new.log")
            try:
                old.wait_ready(path="/readyz")
                new.wait_ready(path="/readyz")
                rows = []
                for (n_p, n_l), body in bodies.items():
                    check_same_answers(old, new, body, n_p * n_l)
                    for server in (old, new):
                        wrk.run(server.url, body, 2.0)
                    runs, cpu = {"old": [], "new": []}, {"old": [], "new": []}
                    for r in range(opts.rounds):
                        order = [("old", old), ("new", new)][:: 1 if r % 2 == 0 else -1]
                        for label, server in order:
                            res, us = measure(wrk, server, body, opts.duration)
                            runs[label].append(res)
                            cpu[label].append(us)
                            log(f"{n_p}x{n_l}: round {r + 1} {label}: {res.rps:,.0f} rps, p99 {res.p99:.2f} ms, "
                                f"{us:,.0f} us CPU/request")
                    o, n = report.med(runs["old"], "rps"), report.med(runs["new"], "rps")
                    co, cn = median(cpu["old"]), median(cpu["new"])
                    rows.append([f"{n_p}x{n_l}", f"{n_p * n_l:,}", f"{o:,.0f}", f"{n:,.0f}", f"{n / o:.3f}",
                                 f"{co:,.0f}", f"{cn:,.0f}", f"{cn / co:.3f}",
                                 " ".join(f"{x.rps:,.0f}" for x in runs["old"]),
                                 " ".join(f"{x.rps:,.0f}" for x in runs["new"])])
            finally:
                old.stop()
                new.stop()
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    print(report.table(["size", "pairs", f"{opts.against} rps", "this checkout rps", "new / old",
                        "old CPU us/req", "new CPU us/req", "new / old CPU",
                        "old per round", "new per round"], rows))


if __name__ == "__main__":
    main()
