"""Tests of the shared table: the file format, both parsers, the build lock, leftovers, failures."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp_bridge.adapters import csv_build, csv_fast
from atp_bridge.adapters.base import WholeNumbers
from atp_bridge.adapters.csv_build import (TableDirError, build, open_table, previous_table, source_key,
                                           table_dir, table_path)
from atp_bridge.adapters.csv_shared import MappedTable
from atp_bridge.adapters.csv_write import write_table
from atp_bridge.adapters.csv_table import DEFAULT_COLUMNS, _path_signature
from tests.adapters.csv_reference import load_table

ARGS = ("utf-8-sig", ",", DEFAULT_COLUMNS)


def built(tmp_path: Path, text: str, name: str = "atp.csv", **kwargs) -> tuple[dict, Path]:
    """Write ``text`` and build its table in ``tmp_path/tables``: (build result, csv path)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    directory = tmp_path / "tables"
    directory.mkdir(exist_ok=True)
    return build(str(directory), str(path), *ARGS, **kwargs), path


def mapped(tmp_path: Path, text: str, **kwargs) -> MappedTable:
    result, path = built(tmp_path, text, **kwargs)
    assert "table" in result, result
    table = open_table(str(tmp_path / "tables"), source_key(str(path), *ARGS), str(path),
                       _path_signature(str(path)))
    assert table is not None
    return table


def fast_columns(text: str, tmp_path: Path):
    path = tmp_path / "fast.csv"
    path.write_text(text, encoding="utf-8", newline="")
    return csv_fast.parse_columns(str(path), *ARGS)


# --- same answers as the in-memory table -------------------------------------------------

plain_ids = st.text(alphabet="ab1é-_.", min_size=1, max_size=3)
values = st.one_of(st.integers(0, 10**6), st.integers(-10**6, 10**6),
                   st.floats(allow_nan=False, allow_infinity=False, width=32))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(plain_ids, plain_ids, values), max_size=40),
       extra=st.lists(plain_ids, max_size=3), data=st.data())
def test_a_mapped_table_answers_like_the_in_memory_one_in_both_layouts(tmp_path_factory, rows, extra,
                                                                         data):
    tmp_path = tmp_path_factory.mktemp("t")
    text = "product,location,atp\n" + "".join(f"{p},{loc},{v!r}\n" for p, loc, v in rows)
    reference = load_table(io.StringIO(text))
    products = [p for p, _, _ in rows] + extra
    locations = data.draw(st.permutations(sorted({loc for _, loc, _ in rows} | set(extra))))
    expected = reference.lookup(products, locations)
    columns = fast_columns(text, tmp_path)  # plain ids: the fast path must take this file
    for layout in ("dense", "sparse"):
        write_table(str(tmp_path / f"{layout}.table"), {}, *columns, layout=layout)
        table = MappedTable(str(tmp_path / f"{layout}.table"))
        answer = table.lookup(products, locations)
        assert answer == expected and type(answer) is type(expected)
        assert (table.rows, table.products, table.locations, table.whole) == (
            reference.rows, reference.products, reference.locations, reference.whole)


quoted_ids = st.text(alphabet='ab1é," ', min_size=1, max_size=3).filter(lambda s: s[0] != " ")


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(quoted_ids, quoted_ids, values), max_size=30))
def test_files_the_fast_path_declines_answer_the_same_through_the_csv_module(tmp_path_factory, rows):
    tmp_path = tmp_path_factory.mktemp("t")
    out = io.StringIO()
    csv.writer(out).writerows([("product", "location", "atp"), *rows])
    table = mapped(tmp_path, out.getvalue())
    products = [p for p, _, _ in rows]
    locations = sorted({loc for _, loc, _ in rows})
    assert table.lookup(products, locations) == load_table(io.StringIO(out.getvalue())).lookup(
        products, locations)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_duplicates_last_row_wins_decimals_and_whole_numbers_as_today(tmp_path, layout):
    text = "product,location,atp\nA,L1,1\nB,L1,5\nA,L1,2\nA,L1,3\nB,L2,2.5\n"
    columns = fast_columns(text, tmp_path)
    write_table(str(tmp_path / "t.table"), {}, *columns, layout=layout)
    assert MappedTable(str(tmp_path / "t.table")).lookup(["A", "B", "C"], ["L1", "L2", "L9"]) == [
        3.0, None, None, 5.0, 2.5, None, None, None, None]
    whole = fast_columns("product,location,atp\nA,L1,3\nA,L2,0\nB,L1,7.0\nA,L1,4\n", tmp_path)
    write_table(str(tmp_path / "w.table"), {}, *whole, layout=layout)
    answer = MappedTable(str(tmp_path / "w.table")).lookup(["A", "B"], ["L1", "L2"])
    assert type(answer) is WholeNumbers and answer == [4, 0, 7, None]
    assert {type(v) for v in answer} == {int, type(None)}


@pytest.mark.parametrize("text, parser", [
    ("product,location,atp\r\nA,L1,4\r\n\r\nB,L1,5\r\n", "fast"),   # CRLF and a blank line
    ("\ufeffproduct,location,atp\nA,L1,4\nB,L1,5", "fast"),          # a BOM, no final newline
    ('product,location,atp\n"A",L1,4\nB,L1,5\n', "csv"),             # quotes
    ("product, location, atp\nA, L1, 4\nB,L1,5\n", "csv"),           # spaces after the delimiter
    ("product,location,atp\nA,L1,4\rB,L1,5\n", "csv"),               # a lone carriage return
    ("product,location,atp\nA,L1,4\nB,L1,5_0\n", "fast"),            # float() takes 5_0 on both paths
])
def test_both_parsers_give_the_same_table_and_the_fast_one_steps_aside_when_unsure(tmp_path, text, parser):
    result, path = built(tmp_path, text)
    assert result["parser"] == parser
    table = open_table(str(tmp_path / "tables"), source_key(str(path), *ARGS), str(path),
                       _path_signature(str(path)))
    expected = load_table(io.StringIO(text.lstrip("\ufeff"), newline="")).lookup(["A", "B"], ["L1"])
    assert table.lookup(["A", "B"], ["L1"]) == expected and expected[0] == 4


def test_a_big_file_is_parsed_in_parallel_ranges_with_one_numbering(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_fast, "MIN_PART", 1000)  # a few KB: four ranges
    text = "product,location,atp\n" + "".join(f"P{i % 97},L{i % 13},{i}\n" for i in range(3000))
    columns = fast_columns(text, tmp_path)
    write_table(str(tmp_path / "t.table"), {}, *columns)
    reference = load_table(io.StringIO(text))
    products, locations = [f"P{i}" for i in range(99)], [f"L{j}" for j in range(14)]
    assert MappedTable(str(tmp_path / "t.table")).lookup(products, locations) == reference.lookup(
        products, locations)
    assert columns[0][:3] == ["P0", "P1", "P2"]  # numbered in order of first appearance


# --- failures and leftovers ---------------------------------------------------------------

def test_a_broken_file_gives_the_csv_module_message_and_is_parsed_only_once(tmp_path, monkeypatch):
    result, path = built(tmp_path, "product,location,atp\nA,L1,1\nA,L2\n")
    assert result["error"] == f"{path}: line 3: expected 3 fields, got 2"
    monkeypatch.setattr(csv_build, "_parse", lambda *a: pytest.fail("parsed a second time"))
    again = build(str(tmp_path / "tables"), str(path), *ARGS)
    assert again["error"] == result["error"]


def test_a_broken_new_file_leaves_the_last_good_table_for_workers_that_restart(tmp_path):
    good, path = built(tmp_path, "product,location,atp\nA,L1,1\n")
    path.write_text("product,location,atp\nA,L1,many\n")
    bad = build(str(tmp_path / "tables"), str(path), *ARGS)
    assert bad["error"] == f"{path}: line 2: atp 'many' is not a finite number"
    key = source_key(str(path), *ARGS)
    assert open_table(str(tmp_path / "tables"), key, str(path), _path_signature(str(path))) is None
    previous = previous_table(str(tmp_path / "tables"), key)
    assert previous.path == good["table"] and previous.lookup(["A"], ["L1"]) == [1]


def test_a_good_new_table_replaces_the_old_one_and_the_old_file_is_deleted(tmp_path):
    first, path = built(tmp_path, "product,location,atp\nA,L1,1\n")
    second, _ = built(tmp_path, "product,location,atp\nA,L1,2\n")
    assert second["built"] and second["table"] != first["table"]
    assert sorted(p.name for p in (tmp_path / "tables").glob("*.table")) == [Path(second["table"]).name]


def test_garbage_or_a_truncated_file_at_the_tables_name_is_rebuilt_not_served(tmp_path):
    result, path = built(tmp_path, "product,location,atp\nA,L1,1\n")
    size = os.path.getsize(result["table"])
    with open(result["table"], "r+b") as f:
        f.truncate(size - 8)  # a crash of the machine half way through a write
    again = build(str(tmp_path / "tables"), str(path), *ARGS)
    assert again["built"] is True and os.path.getsize(again["table"]) == size
    Path(again["table"]).write_bytes(b"junk" * 10)
    assert build(str(tmp_path / "tables"), str(path), *ARGS)["built"] is True


def test_the_table_of_another_csv_under_this_csvs_name_is_never_served(tmp_path):
    other, _ = built(tmp_path, "product,location,atp\nA,L1,99\n", name="other.csv")
    (tmp_path / "atp.csv").write_text("product,location,atp\nA,L1,1\n")
    path = str(tmp_path / "atp.csv")
    key, sig = source_key(path, *ARGS), _path_signature(path)
    target = table_path(str(tmp_path / "tables"), key, sig)
    shutil.copy(other["table"], target)  # a leftover that has the right name
    assert open_table(str(tmp_path / "tables"), key, path, sig) is None
    assert build(str(tmp_path / "tables"), path, *ARGS)["built"] is True
    assert open_table(str(tmp_path / "tables"), key, path, sig).lookup(["A"], ["L1"]) == [1]


def test_a_table_whose_sample_hash_differs_from_the_source_is_not_served(tmp_path):
    result, path = built(tmp_path, "product,location,atp\nA,L1,1\n")
    table = MappedTable(result["table"])
    header = dict(table.header, sample="0" * 32)
    columns = fast_columns(path.read_text(), tmp_path)
    write_table(result["table"], {k: header[k] for k in ("key", "source_sig", "sample")}, *columns)
    assert open_table(str(tmp_path / "tables"), header["key"], str(path), tuple(header["source_sig"])) is None


def test_a_crashed_builds_temporary_file_is_removed_by_the_next_build(tmp_path):
    (tmp_path / "atp.csv").write_text("product,location,atp\nA,L1,1\n")
    directory = tmp_path / "tables"
    directory.mkdir()
    key = source_key(str(tmp_path / "atp.csv"), *ARGS)
    leftover = directory / f"csv-{key}-0123456789abcdef.table.tmp4242"
    leftover.write_bytes(b"half a table")
    assert build(str(directory), str(tmp_path / "atp.csv"), *ARGS)["built"] is True
    assert not leftover.exists()


def test_concurrent_builds_of_one_file_parse_it_once(tmp_path, monkeypatch):
    (tmp_path / "atp.csv").write_text("product,location,atp\nA,L1,1\n")
    (tmp_path / "tables").mkdir()
    parses, real = [], csv_build._parse
    monkeypatch.setattr(csv_build, "_parse", lambda *a: parses.append(1) or real(*a))
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        build(str(tmp_path / "tables"), str(tmp_path / "atp.csv"), *ARGS))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(parses) == 1 and sorted(r["built"] for r in results) == [False, False, False, True]
    assert len({r["table"] for r in results}) == 1


def test_the_table_header_ties_the_file_to_its_source(tmp_path):
    result, path = built(tmp_path, "product,location,atp\nA,L1,1\n")
    header = MappedTable(result["table"]).header
    assert header["source"] == str(path) and header["source_sig"] == list(_path_signature(str(path)))
    assert len(header["content_hash"]) == 32 and header["parser"] == "fast"
    assert json.loads(json.dumps(header))["rows"] == 1


# --- the table directory -------------------------------------------------------------------

def test_the_table_dir_is_the_option_else_the_environment_else_a_private_temp_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ATP_BRIDGE_TABLE_DIR", str(tmp_path / "from-env"))
    assert table_dir(str(tmp_path / "opt")) == str(tmp_path / "opt")
    assert table_dir() == str(tmp_path / "from-env") and (tmp_path / "from-env").is_dir()
    monkeypatch.delenv("ATP_BRIDGE_TABLE_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    default = table_dir()
    assert default == str(tmp_path / f"atp-bridge-tables-{os.getuid()}")
    assert os.stat(default).st_mode & 0o777 == 0o700
    os.chmod(default, 0o777)
    with pytest.raises(TableDirError, match=r"not private to this user .*mode 777.*ATP_BRIDGE_TABLE_DIR"):
        table_dir()


# --- a sparse table written in place ----------------------------------------------------------

def sparse_table(tmp_path: Path, text: str) -> MappedTable:
    """The file's table as the builder writes a sparse one: runs filled in place, then sorted."""
    from atp_bridge.adapters.csv_write import write_sparse

    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8", newline="")
    found = csv_fast.scan(str(path), *ARGS)
    write_sparse(str(tmp_path / "s.table"), {}, found.products, found.locations, found.rows,
                 found.whole, found.product_counts(), found.fill_runs)
    return MappedTable(str(tmp_path / "s.table"))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(plain_ids, plain_ids, values), max_size=60),
       sort_rows=st.sampled_from([1, 3, 1 << 19]), block=st.sampled_from([40, 1 << 20]),
       part=st.sampled_from([100, 8 << 20]))
def test_a_sparse_table_written_in_place_answers_like_the_in_memory_one(tmp_path_factory, rows,
                                                                          sort_rows, block, part):
    from atp_bridge.adapters import csv_write

    tmp_path = tmp_path_factory.mktemp("s")
    text = "product,location,atp\n" + "".join(f"{p},{loc},{v!r}\n" for p, loc, v in rows)
    reference = load_table(io.StringIO(text))
    products = [p for p, _, _ in rows] + ["nope"]
    locations = sorted({loc for _, loc, _ in rows}) + ["nowhere"]
    # small sort slices, blocks and ranges: runs cut across slices, blocks and processes
    saved = csv_write.SORT_ROWS, csv_fast.BLOCK, csv_fast.MIN_PART
    csv_write.SORT_ROWS, csv_fast.BLOCK, csv_fast.MIN_PART = sort_rows, block, part
    try:
        table = sparse_table(tmp_path, text)
    finally:
        csv_write.SORT_ROWS, csv_fast.BLOCK, csv_fast.MIN_PART = saved
    answer = table.lookup(products, locations)
    assert answer == reference.lookup(products, locations)
    assert type(answer) is type(reference.lookup(products, locations))
    assert table.layout == "sparse" and (table.rows, table.products, table.locations, table.whole) == (
        reference.rows, reference.products, reference.locations, reference.whole)


def test_a_sparse_file_with_duplicates_keeps_the_last_row_and_closes_the_gaps(tmp_path):
    text = ("product,location,atp\nB,L2,1\nA,L3,7\nB,L1,2\nA,L3,8\nB,L2,3\nC,L1,4\nA,L1,5\n"
            "B,L2,6\n")
    table = sparse_table(tmp_path, text)
    assert table.lookup(["A", "B", "C"], ["L1", "L2", "L3"]) == [5, None, 8, 2, 6, None, 4, None, None]
    sections = table.header["sections"]
    assert sections["locs"][1] == 4 * 5 and sections["vals"][1] == 8 * 5  # 5 cells of 8 rows
    starts = list(table._starts)
    assert starts == [0, 2, 4, 5]  # B, A, C in order of first appearance: 2, 2 and 1 cells
    assert os.path.getsize(tmp_path / "s.table") == sections["vals"][0] + 8 * 5


def test_a_sparse_table_is_built_without_holding_its_rows(tmp_path):
    """The builder's peak memory grows by the table's own pages, not by the rows held: 1,000,000
    rows of 5,000,000 cells (20% full) against 100 rows, in a child process each (its peak RSS),
    with small parse blocks and sort slices so that their temporaries stay small too."""
    import subprocess
    import sys

    def peak_mb(products: int) -> float:
        path = tmp_path / f"sparse-{products}.csv"
        with open(path, "w") as f:
            f.write("product,location,atp\n")
            for i in range(products):  # 100 locations, every fifth one stocked
                f.write("".join(f"P{i},L{j},{(i + j) % 97}\n" for j in range(i % 5, 100, 5)))
        directory = tmp_path / f"t{products}"
        directory.mkdir()
        code = ("import json, resource, sys\n"
                "from atp_bridge.adapters import csv_fast, csv_write\n"
                "csv_fast.BLOCK, csv_write.SORT_ROWS = 1 << 18, 1 << 16\n"
                "from atp_bridge.adapters.csv_build import build\n"
                "from atp_bridge.adapters.csv_table import DEFAULT_COLUMNS\n"
                f"r = build({str(directory)!r}, {str(path)!r}, 'utf-8-sig', ',', DEFAULT_COLUMNS, processes=1)\n"
                "assert r.get('built'), r\n"
                "from atp_bridge.adapters.csv_shared import MappedTable\n"
                "t = MappedTable(r['table'])\n"
                "assert t.layout == 'sparse', t.layout\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=str(Path(__file__).resolve().parents[2]))
        assert out.returncode == 0, out.stderr
        return float(out.stdout.split()[-1])

    small, big = peak_mb(5), peak_mb(50_000)  # 100 rows; 1,000,000 rows
    # holding the rows cost ~65 B each (65 MB here); the runs written in place cost the
    # table's own pages (12 MB: 12 B a row) and a block's and a slice's temporaries
    assert big - small < 30, (small, big)
