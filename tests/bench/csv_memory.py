"""Memory and speed check of the CSV adapter (a script, not a test).

Generates a CSV in a temporary directory (default: 50,000 products x 20
locations = 1,000,000 rows, ~21 MB), loads it with ``CsvAdapter`` (the table
is built into a file there and mapped) and prints the RSS growth (the mapped
table's pages included, though workers share them: ``tests.bench.scale``
measures PSS), the load time and the cost of one 500 x 20 lookup.

    python tests/bench/csv_memory.py            # dense: every pair present
    python tests/bench/csv_memory.py --sparse   # 200,000 x 50 at 10% fill
    python tests/bench/csv_memory.py --name-cache  # a worker's cache of 100,000 product names
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from atp_bridge.adapters.base import Batch  # noqa: E402
from atp_bridge.adapters.csv_file import CsvAdapter  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def anon_mb() -> float:
    """This process's RssAnon (memory that is no file's pages), MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


def generate(path: Path, products: int, locations: int, fill: float) -> int:
    """Write the file a chunk at a time so generating it costs this process no memory."""
    rng = random.Random(42)
    locs = [f"STORE{j:02d}" for j in range(locations)]
    rows = 0
    with open(path, "w", newline="") as f:
        f.write("product,location,atp\n")
        for i in range(products):
            pid = str(10_000_000 + i)
            chunk = [f"{pid},{loc},{rng.randrange(1000)}\n" for loc in locs
                     if fill >= 1 or rng.random() < fill]
            rows += len(chunk)
            f.write("".join(chunk))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparse", action="store_true", help="200,000 x 50 at 10%% fill")
    parser.add_argument("--name-cache", action="store_true",
                        help="the memory of a worker's name cache when full (CACHE_LIMIT names)")
    args = parser.parse_args()
    if args.name_cache:
        return name_cache()
    products, locations, fill = (200_000, 50, 0.1) if args.sparse else (50_000, 20, 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "atp.csv"
        rows = generate(path, products, locations, fill)
        print(f"file: {rows:,} rows, {path.stat().st_size / 2**20:.1f} MB")

        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        # the table file goes beside the CSV; its pages are file-backed (shared by workers)
        adapter = CsvAdapter("bench", path=str(path), reload_interval_s=None, table_dir=tmp)
        load_s = time.perf_counter() - started
        gc.collect()
        after = rss_mb()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        health = adapter.health()
        assert health.ok, health.detail
        print(f"layout: {adapter._state[0].layout}; health: {dict(health.info)}")
        print(f"load: {load_s:.2f} s")
        print(f"RSS: {before:.1f} MB -> {after:.1f} MB, growth {after - before:.1f} MB "
              f"(peak RSS {peak:.1f} MB, peak growth {peak - before:.1f} MB)")

        rng = random.Random(7)
        batch = Batch([str(10_000_000 + rng.randrange(products)) for _ in range(500)],
                      [f"STORE{j:02d}" for j in range(20)], deadline=time.monotonic() + 60)
        answer = adapter.fetch(batch)
        assert len(answer) == 10_000
        times = []
        for _ in range(200):
            t = time.perf_counter()
            adapter.fetch(batch)
            times.append(time.perf_counter() - t)
        times.sort()
        print(f"lookup 500 x 20 (10,000 pairs): median {times[100] * 1e3:.2f} ms, "
              f"p95 {times[190] * 1e3:.2f} ms, known {sum(v is not None for v in answer):,}")
        adapter.close()


def name_cache() -> None:
    """RSS growth of one process that looked up CACHE_LIMIT distinct products (500 per
    request, as the webhook does): the cost of its name cache, per worker."""
    from atp_bridge.adapters import csv_shared

    limit = csv_shared.CACHE_LIMIT
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "atp.csv"
        generate(path, limit + 20_000, 2, 1.0)
        adapter = CsvAdapter("bench", path=str(path), reload_interval_s=None, table_dir=tmp)
        table = adapter._state[0]
        table.lookup([str(10_000_000 + i) for i in range(500)], ["STORE00"])  # one-off costs first
        gc.collect()
        before, cache = anon_mb(), table._p.cache
        cached_before = len(cache)
        for k in range(500, limit, 500):  # new str objects each time, as JSON parsing makes them
            table.lookup([str(10_000_000 + i) for i in range(k, k + 500)], ["STORE00", "STORE01"])
        gc.collect()
        after = anon_mb()
        grown = len(cache) - cached_before
        print(f"name cache: {len(cache):,} names (limit {limit:,}); anonymous RSS {before:.1f} -> "
              f"{after:.1f} MB, +{after - before:.1f} MB for {grown:,} names = "
              f"{(after - before) * 2**20 / grown:.0f} B per name (the table's file pages not counted)")
        adapter.close()


if __name__ == "__main__":
    main()
