"""Several real ``atp-bridge serve`` workers and one shared CSV table: sharing, reload, restart, failure."""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.serve import BridgeProcess

pytestmark = pytest.mark.slow
PRODUCTS, LOCATIONS = 300, 40  # 12,000 rows: a table of ~100 KB


def write_csv(path: Path, plus: int = 0) -> None:
    rows = "".join(f"P{i},S{j},{(i * 7 + j) % 50 + plus}\n" for i in range(PRODUCTS) for j in range(LOCATIONS))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("product,location,atp\n" + rows)
    os.replace(tmp, path)


def body(products=("P1", "P299"), locations=("S0", "S39")) -> dict:
    return {"products": [{"product_id": p, "external_identifier": p} for p in products],
            "fulfillment_locations": list(locations)}


def expected(plus: int = 0) -> list[int]:
    return [(i * 7 + j) % 50 + plus for i in (1, 299) for j in (0, 39)]


def atps(bridge) -> list[int]:
    response = bridge.post(body())
    assert response.status_code == 200, response.text
    return [a["atp"] for a in response.json()["availabilities"]]


def table_mappings(pid: int) -> dict[str, dict]:
    """The worker's mappings of table files: name -> summed smaps fields (kB)."""
    out: dict[str, dict] = {}
    current = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = fields[5] if len(fields) > 5 else ""
            current = out.setdefault(os.path.basename(name), {}) if name.endswith(".table") else None
        elif current is not None and line.endswith(" kB"):
            current[fields[0].rstrip(":")] = current.get(fields[0].rstrip(":"), 0) + int(fields[1])
    return out


def wait_until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {timeout}s")
        time.sleep(0.05)
    return result


def log_count(log: Path, pattern: str) -> int:
    return len(re.findall(pattern, log.read_text(errors="replace")))


@pytest.fixture
def bridge(tmp_path):
    """3 workers serving one CSV, tables in tmp_path/tables, output in tmp_path/serve.log."""
    write_csv(tmp_path / "atp.csv")
    (tmp_path / "bridge.yaml").write_text(
        "adapters:\n  - name: stores\n    type: csv\n    path: atp.csv\n    reload_interval_s: 0.2\n")
    env = {"ATP_BRIDGE_TABLE_DIR": str(tmp_path / "tables"), "ATP_BRIDGE_LOG_FLUSH_MS": "20"}
    process = BridgeProcess(tmp_path / "bridge.yaml", workers=3, env=env, output=tmp_path / "serve.log")
    try:
        process.wait_ready(path="/readyz")
        wait_until(lambda: len(workers(process)) == 3, what="three workers")
        # /readyz answers from one worker: wait until every worker maps the table
        wait_until(lambda: all(table_mappings(pid) for pid in workers(process)),
                   what="every worker on the table")
        yield process
    finally:
        process.stop()


def workers(process) -> list[int]:
    from tests.bench.servers import children

    return children(process.proc.pid)


def test_three_workers_answer_from_one_table_file_built_once_with_little_private_memory(bridge, tmp_path):
    log = tmp_path / "serve.log"
    for _ in range(12):
        assert atps(bridge) == expected()
    tables = list((tmp_path / "tables").glob("*.table"))
    assert len(tables) == 1
    wait_until(lambda: log_count(log, r"mapped the existing table of|built the table of") == 3,
               what="three load lines")
    assert log_count(log, r"built the table of") == 1  # one parse for three workers
    size_kb = tables[0].stat().st_size // 1024
    for pid in workers(bridge):
        maps = table_mappings(pid)
        assert list(maps) == [tables[0].name]  # every worker maps the same file
        m = maps[tables[0].name]
        assert m["Size"] >= size_kb and m["Private_Dirty"] == 0 and m["Anonymous"] == 0
        assert m["Rss"] <= m["Size"]  # file pages: the page cache's, one copy for all


def test_a_reload_is_built_once_and_swapped_in_every_worker_and_the_old_table_let_go(bridge, tmp_path):
    log = tmp_path / "serve.log"
    (old,) = [p.name for p in (tmp_path / "tables").glob("*.table")]
    write_csv(tmp_path / "atp.csv", plus=1000)

    def every_worker_on_the_new_table():
        names = [set(table_mappings(pid)) for pid in workers(bridge)]
        return all(len(n) == 1 and old not in n for n in names)
    wait_until(every_worker_on_the_new_table, what="every worker on the new table, the old unmapped")
    assert not (tmp_path / "tables" / old).exists()
    assert all(atps(bridge) == expected(1000) for _ in range(12))
    # the builder's worker maps the table before it logs the line: the others may be quicker
    wait_until(lambda: log_count(log, r"built the table of") >= 2, what="the builder's line")
    time.sleep(0.5)  # a second builder's line would be as quick
    assert log_count(log, r"built the table of") == 2
    # the first build had the machine to itself; the reload's ran beside the workers, idle class
    assert log_count(log, r"built the table of [^\n]* \(builder: normal\)") == 1
    assert log_count(log, r"built the table of [^\n]* \(builder: idle\)") == 1


def test_a_worker_killed_by_sigkill_is_restarted_and_maps_the_existing_table(bridge, tmp_path):
    log = tmp_path / "serve.log"
    wait_until(lambda: log_count(log, r"mapped the existing table of|built the table of") == 3,
               what="three load lines")
    mapped_before = log_count(log, r"mapped the existing table of")
    victim = workers(bridge)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in workers(bridge) and len(workers(bridge)) == 3, what="a new worker")
    wait_until(lambda: log_count(log, r"mapped the existing table of") == mapped_before + 1,
               what="the new worker's 'mapped the existing table' line")
    assert log_count(log, r"built the table of") == 1  # nobody parsed the file again
    assert all(atps(bridge) == expected() for _ in range(12))


def test_a_broken_new_file_keeps_the_old_table_in_every_worker_even_one_that_restarts(bridge, tmp_path):
    log = tmp_path / "serve.log"
    (old,) = [p.name for p in (tmp_path / "tables").glob("*.table")]
    broken = tmp_path / "atp.tmp"
    broken.write_text("product,location,atp\nP1,S0,1\nP1,S1\n")
    os.replace(broken, tmp_path / "atp.csv")
    # each worker reads the change on its own poll: each logs that it keeps the old table
    wait_until(lambda: log_count(log, r"keeping the previous data") == 3, what="three 'keeping' lines")
    for _ in range(6):
        response = bridge.get("/readyz")
        assert response.status_code == 503
        assert response.json()["adapters"]["stores"]["detail"] == (
            f"{tmp_path / 'atp.csv'}: line 3: expected 3 fields, got 2")
    victim = workers(bridge)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in workers(bridge) and len(workers(bridge)) == 3, what="a new worker")
    wait_until(lambda: log_count(log, r"keeping the previous data") == 4,
               what="the new worker's 'keeping' line")
    for pid in workers(bridge):
        wait_until(lambda: list(table_mappings(pid)) == [old], what=f"worker {pid} on the old table")
    responses = [bridge.post(body()) for _ in range(12)]
    assert all([a["atp"] for a in r.json()["availabilities"]] == expected() for r in responses)
    assert [p.name for p in (tmp_path / "tables").glob("*.table")] == [old]
    assert len(list((tmp_path / "tables").glob("*.error"))) == 1  # parsed once, remembered
    assert log_count(log, r"expected 3 fields, got 2") >= 3
    assert len(re.findall(r"csv table builder|Traceback", log.read_text())) == 0
