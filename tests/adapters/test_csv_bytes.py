"""Tests of the numpy block parser: ids of every length, values, line ends, what it declines."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp_bridge.adapters import csv_bytes, csv_fast
from atp_bridge.adapters.csv_bytes import Declined
from atp_bridge.adapters.csv_build import build
from atp_bridge.adapters.csv_table import DEFAULT_COLUMNS
from tests.adapters.csv_reference import load_table

ARGS = ("utf-8-sig", ",", DEFAULT_COLUMNS)


def columns_of(tmp_path: Path, text: str, encoding: str = "utf-8", **kwargs):
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return csv_fast.parse_columns(str(path), kwargs.pop("file_encoding", "utf-8-sig"), ",",
                                  DEFAULT_COLUMNS, **kwargs)


def as_rows(columns) -> list:
    """The parsed rows as (product, location, value) in file order."""
    pnames, lnames, pidx, lidx, vals = columns
    return [(pnames[i], lnames[j], v) for i, j, v in zip(pidx.tolist(), lidx.tolist(), vals.tolist())]


def reference_rows(text: str) -> list:
    products, locations, pidx, lidx, vals = csv_table_rows(text)
    pnames, lnames = list(products), list(locations)
    return [(pnames[i], lnames[j], v) for i, j, v in zip(pidx, lidx, vals)]


def csv_table_rows(text: str):
    from atp_bridge.adapters.csv_table import parse_rows

    return parse_rows(io.StringIO(text, newline=""))


ids = st.text(alphabet="aZ9-é€", min_size=1, max_size=30)


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(ids, ids, st.integers(0, 10**6)), min_size=1, max_size=60),
       block=st.sampled_from([64, 256, 1 << 20]))
def test_ids_of_any_length_across_blocks_are_numbered_like_the_csv_module(tmp_path_factory, rows, block):
    tmp_path = tmp_path_factory.mktemp("b")
    text = "product,location,atp\n" + "".join(f"{p},{loc},{v}\n" for p, loc, v in rows)
    csv_fast.BLOCK, saved = block, csv_fast.BLOCK  # small blocks: short ids first, long ones later
    try:
        columns = columns_of(tmp_path, text)
    finally:
        csv_fast.BLOCK = saved
    assert as_rows(columns) == reference_rows(text)
    assert columns[0] == list(dict.fromkeys(p for p, _, _ in rows))  # order of first appearance


def test_values_in_numpy_and_by_float_are_the_csv_modules_values(tmp_path):
    values = ["0", "007", "42", "999999999999999", "1234567890123456789", "2.50", "-3", "1e3",
              "5_0", "12 ", "+4", "0.1"]
    text = "product,location,atp\n" + "".join(f"P{i},L,{v}\n" for i, v in enumerate(values))
    got = [v for _, _, v in as_rows(columns_of(tmp_path, text))]
    assert got == [float(v) for v in values]
    assert got[4] == 1234567890123456789.0 and got[9] == 12.0


@pytest.mark.parametrize("text", [
    "product,location,atp\r\nA,L1,4\r\n\r\nB,L1,5\r\n",   # CRLF, a blank CRLF line
    "product,location,atp\nA,L1,4\n\n\nB,L1,5",           # blank lines, no final newline
    "\ufeffproduct,location,atp\nA,L1,4\nB,L1,5\n",        # a BOM
    "extra,product,x,location,atp\n1,A,y,L1,4\n2,B,z,L1,5\n",  # other columns, in another order
])
def test_line_ends_blank_lines_a_bom_and_extra_columns_read_like_the_csv_module(tmp_path, text):
    assert as_rows(columns_of(tmp_path, text)) == reference_rows(text.lstrip("\ufeff")) == [
        ("A", "L1", 4.0), ("B", "L1", 5.0)]


@pytest.mark.parametrize("text, why", [
    ('product,location,atp\nA,"L1",4\n', "quotes"),
    ("product,location,atp\nA, L1,4\n", "space after a delimiter"),
    ("product,location,atp\nA,L1,4\rB,L1,5\n", "lone carriage return"),
    ("product,location,atp\nA,L1\n", "wrong number of fields"),
    ("product,location,atp\nA,L1,4,5\n", "wrong number of fields"),
    ("product,location,atp\n,L1,4\n", "empty"),
    ("product,location,atp\nA,L1,\n", "empty"),
    ("product,location,atp\nA,L1,four\n", "not a number"),
    ("product,location,atp\nA,L1,nan\n", "NaN"),
    ("product,location,atp\nA,L\0,1\n", "NUL"),
])
def test_anything_the_csv_module_reads_otherwise_is_declined(tmp_path, text, why):
    with pytest.raises(Declined):
        columns_of(tmp_path, text)


def test_bytes_that_are_not_utf8_or_not_ascii_for_an_ascii_file_are_declined(tmp_path):
    with pytest.raises(Declined):
        columns_of(tmp_path, b"product,location,atp\nA\xff,L1,4\n")
    with pytest.raises(Declined):
        columns_of(tmp_path, "product,location,atp\nAé,L1,4\n", file_encoding="ascii")


def test_two_long_ids_with_one_hash_are_declined_and_the_csv_module_reads_them(tmp_path, monkeypatch):
    text = "product,location,atp\nLONG-PRODUCT-A,L1,1\nLONG-PRODUCT-B,L1,2\nLONG-PRODUCT-A,L2,3\n"
    real = csv_bytes._keys

    def colliding(words, starts, lens, nwords):
        keys, parts = real(words, starts, lens, nwords)
        keys[lens > 8] = 12345  # every long id gets one hash
        return keys, parts
    monkeypatch.setattr(csv_bytes, "_keys", colliding)
    with pytest.raises(Declined, match="hash"):
        columns_of(tmp_path, text)
    (tmp_path / "tables").mkdir()
    path = tmp_path / "g.csv"
    path.write_text(text)
    result = build(str(tmp_path / "tables"), str(path), *ARGS)
    assert result["parser"] == "csv"
    from atp_bridge.adapters.csv_shared import MappedTable
    table = MappedTable(result["table"])
    assert table.lookup(["LONG-PRODUCT-A", "LONG-PRODUCT-B"], ["L1", "L2"]) == [1, 3, 2, None]
    assert load_table(io.StringIO(text)).lookup(["LONG-PRODUCT-B"], ["L1"]) == [2]


# --- the dense build's second pass ----------------------------------------------------------

def build_in_ranges(tmp_path: Path, text: str, monkeypatch):
    from atp_bridge.adapters.csv_shared import MappedTable

    monkeypatch.setattr(csv_fast, "MIN_PART", 1000)  # a few KB per range: two processes
    monkeypatch.setattr(csv_fast.Scan, "columns", lambda self: pytest.fail("kept the rows"))
    (tmp_path / "tables").mkdir()
    path = tmp_path / "r.csv"
    path.write_text(text)
    result = build(str(tmp_path / "tables"), str(path), *ARGS, processes=2)
    assert result["parser"] == "fast"
    return MappedTable(result["table"])


def test_a_dense_table_is_filled_in_place_by_parallel_ranges_without_keeping_rows(tmp_path, monkeypatch):
    text = "product,location,atp\n" + "".join(f"P{i // 7},L{i % 7},{i}\n" for i in range(3000))
    table = build_in_ranges(tmp_path, text, monkeypatch)
    products, locations = [f"P{i}" for i in range(430)], [f"L{j}" for j in range(8)]
    assert table.layout == "dense" and table.rows == 3000
    assert table.lookup(products, locations) == load_table(io.StringIO(text)).lookup(products, locations)


def test_duplicates_in_different_ranges_are_written_again_in_file_order_so_the_last_row_wins(
        tmp_path, monkeypatch):
    text = "product,location,atp\n" + "".join(f"P{i % 50},L{i % 7},{i}\n" for i in range(3000))
    table = build_in_ranges(tmp_path, text, monkeypatch)
    products, locations = [f"P{i}" for i in range(50)], [f"L{j}" for j in range(7)]
    expected = load_table(io.StringIO(text)).lookup(products, locations)
    assert table.lookup(products, locations) == expected
    assert expected[0] == max(i for i in range(3000) if i % 50 == 0 and i % 7 == 0)


# --- the build lock a worker hands to its builder -------------------------------------------

def test_a_worker_holding_the_build_lock_hands_it_to_its_builder_and_others_see_a_build_running(
        tmp_path):
    from atp_bridge.adapters.csv_build import build_running, source_key, try_lock
    from atp_bridge.adapters.csv_spawn import build_in_subprocess

    path = tmp_path / "atp.csv"
    path.write_text("product,location,atp\nA,L1,4\n")
    directory = tmp_path / "tables"
    directory.mkdir()
    key = source_key(str(path), *ARGS)
    lock = try_lock(str(directory), key)
    assert lock is not None and build_running(str(directory), key)
    assert try_lock(str(directory), key) is None  # a second worker: wait for the table instead
    result = build_in_subprocess(str(directory), str(path), *ARGS, lock_fd=lock, timeout=60)
    assert result["built"] is True  # the child used the inherited lock: no deadlock on a second flock
    assert build_running(str(directory), key)  # still held by this worker until it lets go
    os.close(lock)
    assert not build_running(str(directory), key)


@pytest.mark.parametrize("value, nice", [(None, 10), ("5", 5), ("99", 19), ("-3", 0), ("x", 10)])
def test_the_reload_builders_niceness_comes_from_the_environment(monkeypatch, caplog, value, nice):
    from atp_bridge.adapters import csv_file

    if value is None:
        monkeypatch.delenv(csv_file.NICE_ENV, raising=False)
    else:
        monkeypatch.setenv(csv_file.NICE_ENV, value)
    assert csv_file.reload_nice() == nice
    assert ("ATP_BRIDGE_RELOAD_NICE='x' is not a whole number" in caplog.text) == (value == "x")


# --- the reload builder's priority ----------------------------------------------------------

def test_a_reload_builder_runs_in_the_idle_scheduling_class_and_a_first_build_at_normal_priority(
        tmp_path):
    from atp_bridge.adapters.csv_spawn import build_in_subprocess
    from atp_bridge.adapters.csv_shared import MappedTable

    path = tmp_path / "atp.csv"
    path.write_text("product,location,atp\nA,L1,4\nB,L1,6\n")
    for name in ("t1", "t2", "t3"):
        (tmp_path / name).mkdir()
    first = build_in_subprocess(str(tmp_path / "t1"), str(path), *ARGS, timeout=60)
    assert first["built"] is True and first["priority"] == "normal"
    reload = build_in_subprocess(str(tmp_path / "t2"), str(path), *ARGS, timeout=60, nice=10,
                                 idle_for=60)
    assert reload["built"] is True and reload["priority"] == "idle"
    assert "starved_s" not in reload
    assert MappedTable(reload["table"]).lookup(["A", "B"], ["L1"]) == [4, 6]
    niced = build_in_subprocess(str(tmp_path / "t3"), str(path), *ARGS, timeout=60, nice=7)
    assert niced["priority"] == "nice 7"  # idle class off (ATP_BRIDGE_RELOAD_IDLE_S=0)


def test_an_idle_builder_starved_of_cpu_is_killed_and_run_again_at_its_niceness(tmp_path,
                                                                                 monkeypatch, caplog):
    from atp_bridge.adapters import csv_spawn
    from atp_bridge.adapters.csv_spawn import build_in_subprocess
    from atp_bridge.adapters.csv_shared import MappedTable

    path = tmp_path / "atp.csv"
    path.write_text("product,location,atp\nA,L1,4\n")
    directory = tmp_path / "tables"
    directory.mkdir()
    looks = []

    def no_cpu(pid):  # as if saturated workers left it no CPU at all
        looks.append(pid)
        return 0.0
    monkeypatch.setattr(csv_spawn, "_cpu_seconds", no_cpu)
    monkeypatch.setattr(csv_spawn, "CHECK_S", 0.02)
    result = build_in_subprocess(str(directory), str(path), *ARGS, timeout=60, nice=10,
                                 idle_for=0.1)
    assert result["starved_s"] == 0.1 and result["priority"] == "nice 10" and result["built"] is True
    assert len(looks) >= 5  # judged over a window of samples, not at once
    assert f"csv table builder of {path}: under 5% of a core for 0.1 s in the idle scheduling " \
        "class (the workers leave no CPU idle); starting it again at nice 10" in caplog.text
    assert [f.name for f in directory.iterdir() if ".tmp" in f.name] == []
    assert MappedTable(result["table"]).lookup(["A"], ["L1"]) == [4]


def test_a_builder_that_gets_cpu_is_not_judged_starved_and_its_cpu_time_is_read(tmp_path,
                                                                               monkeypatch):
    import subprocess
    import sys

    from atp_bridge.adapters import csv_spawn

    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.3: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while csv_spawn._cpu_seconds(spin.pid) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0.3 <= csv_spawn._cpu_seconds(spin.pid) < 2
    finally:
        spin.kill()
        spin.wait()
    assert csv_spawn._cpu_seconds(spin.pid) == 0.0  # gone: unknown
    path = tmp_path / "atp.csv"
    path.write_text("product,location,atp\nA,L1,4\n")
    (tmp_path / "t").mkdir()
    monkeypatch.setattr(csv_spawn, "CHECK_S", 0.02)
    # judged every 20 ms over a 0.2 s window (its start-up alone takes longer); it gets the
    # CPU it wants: nothing else runs
    started = time.monotonic()
    result = csv_spawn.build_in_subprocess(str(tmp_path / "t"), str(path), *ARGS, timeout=60,
                                           nice=10, idle_for=0.2)
    assert time.monotonic() - started > 0.2  # so it was judged
    assert result["priority"] == "idle" and "starved_s" not in result


@pytest.mark.parametrize("value, budget", [
    (None, 15.0), ("0", 0.0), ("12.5", 12.5), ("-1", 0.0), ("x", 15.0)])
def test_how_long_an_idle_builder_may_starve(monkeypatch, caplog, value, budget):
    from atp_bridge.adapters import csv_file

    if value is None:
        monkeypatch.delenv(csv_file.IDLE_ENV, raising=False)
    else:
        monkeypatch.setenv(csv_file.IDLE_ENV, value)
    assert csv_file.reload_idle_s() == budget
    assert ("ATP_BRIDGE_RELOAD_IDLE_S='x' is not a number" in caplog.text) == (value == "x")
