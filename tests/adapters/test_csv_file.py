"""Tests of adapters/csv_file.py: parsing, both table layouts, reloading, health.

The adapter serves the shared mapped table; tests/adapters/test_csv_shared*.py cover sharing it."""
from __future__ import annotations

import csv
import io
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

import atp_bridge.errors
from atp_bridge.adapters import adapter_class
from atp_bridge.adapters import csv_build, csv_file
from atp_bridge.adapters.base import Batch, WholeNumbers
from atp_bridge.adapters.csv_file import CsvAdapter
from tests.adapters.csv_reference import load_table
from atp_bridge.config_types import AdapterSpec
from atp_bridge.errors import AdapterUnavailable

SAMPLE_DIR = Path(atp_bridge.errors.__file__).parent / "data"
GOOD = "product,location,atp\n1000061,US01,10\n1000061,US02,0\n10000211,US01,7.5\n"


def batch(products, locations) -> Batch:
    return Batch(list(products), list(locations), deadline=time.monotonic() + 10)


def wait_until(condition, timeout=5.0):
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)


def table(text: str, **kwargs):
    return load_table(io.StringIO(text), **kwargs)


@pytest.fixture
def make_adapter(tmp_path):
    """Factory: write ``text`` to a CSV file (unless None) and build an adapter on it."""
    made = []

    def make(text=GOOD, *, name="stores", filename="atp.csv", **options):
        path = tmp_path / filename
        if text is not None:
            path.write_text(text, encoding="utf-8")
        options.setdefault("reload_interval_s", 0.05)
        options.setdefault("table_dir", str(tmp_path / "tables"))
        adapter = CsvAdapter(name, path=str(path), **options)
        made.append(adapter)
        return adapter, path

    yield make
    for adapter in made:
        adapter.close()


# --- parsing -----------------------------------------------------------------

def test_integer_and_float_atp_values_are_kept_as_numbers():
    t = table("product,location,atp\nA,L1,12\nA,L2,12.5\nB,L1,-3\nB,L2,1e2\n")
    assert t.lookup(["A", "B"], ["L1", "L2"]) == [12.0, 12.5, -3.0, 100.0]
    assert (t.rows, t.products, t.locations) == (4, 2, 2)


def test_a_byte_order_mark_before_the_header_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffproduct,location,atp\r\nA,L1,4\r\n".encode("utf-8"))
    adapter = CsvAdapter("bom", path=str(path), reload_interval_s=None, table_dir=str(tmp_path))
    assert adapter.health().ok
    assert adapter.fetch(batch(["A"], ["L1"])) == [4.0]


def test_a_custom_delimiter_and_column_names_are_used_and_extra_columns_ignored():
    text = "store;note;sku;qty\nUS01;x;1000061;9\nUS02;y;1000061;2\n"
    t = table(text, delimiter=";", columns={"product": "sku", "location": "store", "atp": "qty"})
    assert t.lookup(["1000061"], ["US02", "US01"]) == [2.0, 9.0]


def test_blank_lines_and_spaces_after_the_delimiter_are_tolerated():
    t = table("product, location, atp\n\nA, L1, 3\n\n\"B,1\", L1, 4\n")
    assert t.lookup(["A", "B,1"], ["L1"]) == [3.0, 4.0]


def test_a_missing_column_is_reported_with_the_file_and_the_header_found(make_adapter):
    adapter, path = make_adapter("sku,location,qty\nA,L1,1\n")
    health = adapter.health()
    assert not health.ok
    assert health.detail == (f"{path}: missing column 'product', 'atp' "
                             "(header found: 'sku', 'location', 'qty')")


def test_an_empty_file_is_reported_as_having_no_header():
    with pytest.raises(ValueError, match=r"missing column 'product', 'location', 'atp' "
                                         r"\(header found: none, the file is empty\)"):
        table("")


def test_bad_rows_are_reported_with_their_line_numbers_and_reject_the_whole_file():
    text = ("product,location,atp\n"
            "A,L1,1\n"        # line 2: fine
            "A,L2\n"          # 3
            ",L1,2\n"         # 4
            "B,,2\n"          # 5
            "B,L1,lots\n"     # 6
            "B,L2,nan\n"      # 7
            "C,L1,inf\n"      # 8
            "C,L2,\n")        # 9
    with pytest.raises(ValueError) as info:
        table(text)
    assert str(info.value) == (
        "line 3: expected 3 fields, got 2; line 4: empty product; line 5: empty location; "
        "line 6: atp 'lots' is not a finite number; line 7: atp 'nan' is not a finite number; "
        "line 8: atp 'inf' is not a finite number; line 9: atp '' is not a finite number (7 bad rows)")


def test_more_than_twenty_bad_rows_are_counted_but_only_twenty_are_listed():
    text = "product,location,atp\n" + "".join(f"P{i},L1,x\n" for i in range(25))
    with pytest.raises(ValueError) as info:
        table(text)
    message = str(info.value)
    assert message.startswith("line 2: atp 'x' is not a finite number; line 3:")
    assert "line 21:" in message and "line 22:" not in message
    assert message.endswith("(25 bad rows, first 20 shown)")


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_the_last_of_duplicate_rows_wins(layout):
    t = table("product,location,atp\nA,L1,1\nB,L1,5\nA,L1,2\nA,L1,3\n", layout=layout)
    assert t.lookup(["A", "B"], ["L1"]) == [3.0, 5.0]
    assert t.layout == layout


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_unknown_products_and_locations_answer_none(layout):
    t = table(GOOD, layout=layout)
    assert t.lookup(["1000061", "nope", "10000211"], ["US01", "XX99", "US02"]) == [
        10.0, None, 0.0,
        None, None, None,
        7.5, None, None,
    ]


def test_the_layout_is_chosen_by_how_full_the_grid_is():
    dense = table("product,location,atp\n" + "".join(f"P{i},L{j},1\n" for i in range(4) for j in range(4)))
    sparse = table("product,location,atp\n" + "".join(f"P{i},L{i},1\n" for i in range(8)))
    assert (dense.layout, sparse.layout) == ("dense", "sparse")


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_a_file_of_whole_numbers_answers_ints_the_bridge_need_not_floor(layout):
    whole = table("product,location,atp\nA,L1,3\nA,L2,0\nB,L1,7.0\n", layout=layout)
    answer = whole.lookup(["A", "B", "C"], ["L1", "L2", "L9"])
    assert whole.whole and type(answer) is WholeNumbers
    assert answer == [3, 0, None, 7, None, None, None, None, None]
    assert {type(v) for v in answer} == {int, type(None)}
    for text in ("A,L1,3\nA,L2,2.5\n", "A,L1,3\nA,L2,-1\n", "A,L1,1e19\n"):  # a fraction, a negative, > int64
        mixed = table("product,location,atp\n" + text, layout=layout)
        answer = mixed.lookup(["A"], ["L1"])
        assert not mixed.whole and type(answer) is list and answer == [float(text.split(",")[2].split()[0])]


ids = st.text(alphabet="ab1é,\" ", min_size=1, max_size=3).filter(lambda s: s[0] != " ")
values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(ids, ids, values), max_size=40),
       extra_products=st.lists(ids, max_size=3), extra_locations=st.lists(ids, max_size=3))
def test_dense_and_sparse_tables_answer_like_a_plain_dict(rows, extra_products, extra_locations):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["product", "location", "atp"])
    writer.writerows(rows)
    reference = {(p, loc): float(v) for p, loc, v in rows}  # last row wins
    products = [p for p, _, _ in rows] + extra_products
    locations = sorted({loc for _, loc, _ in rows} | set(extra_locations), reverse=True)
    expected = [reference.get((p, loc)) for p in products for loc in locations]
    for layout in ("dense", "sparse"):
        assert table(out.getvalue(), layout=layout).lookup(products, locations) == expected


# --- the adapter ----------------------------------------------------------------

def test_fetch_answers_product_major_from_memory_and_health_reports_the_table(make_adapter):
    adapter, path = make_adapter()
    assert CsvAdapter.blocking is False and adapter_class("csv") is CsvAdapter
    assert adapter.fetch(batch(["1000061", "10000211"], ["US01", "US02"])) == [10.0, 0.0, 7.5, None]
    health = adapter.health()
    assert (health.ok, health.detail) == (True, "ok")
    assert {k: health.info[k] for k in ("path", "rows", "products", "locations", "last_error")} == {
        "path": str(path), "rows": 3, "products": 2, "locations": 2, "last_error": None}
    assert health.info["loaded_at"].endswith("+00:00")


def test_reload_picks_up_a_file_rewritten_in_place(make_adapter):
    adapter, path = make_adapter()
    path.write_text("product,location,atp\n1000061,US01,42\n", encoding="utf-8")
    wait_until(lambda: adapter.fetch(batch(["1000061"], ["US01", "US02"])) == [42.0, None])
    assert adapter.health().info["rows"] == 1


def test_reload_picks_up_a_file_renamed_over_the_old_one(make_adapter, tmp_path):
    adapter, path = make_adapter()
    new = tmp_path / "atp.csv.tmp"
    new.write_text("product,location,atp\n1000061,US01,11\n", encoding="utf-8")
    os.replace(new, path)
    wait_until(lambda: adapter.fetch(batch(["1000061"], ["US01"])) == [11.0])


def test_background_reloads_parse_in_a_child_process_not_in_the_serving_one(make_adapter, tmp_path,
                                                                           monkeypatch):
    adapter, path = make_adapter()

    def not_here(*args):
        raise AssertionError("parsed in the serving process")
    monkeypatch.setattr(csv_file, "build", not_here)
    new = tmp_path / "atp.csv.tmp"
    new.write_text("product,location,atp\n1000061,US01,33\n", encoding="utf-8")
    os.replace(new, path)
    wait_until(lambda: adapter.fetch(batch(["1000061"], ["US01"])) == [33.0])
    assert adapter.health().ok and adapter.health().info["rows"] == 1


def mapped_tables() -> set[str]:
    """Table files this process maps now (a deleted one too: the builder deletes the old)."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    names = (line.removesuffix(" (deleted)").split()[-1] for line in lines)
    return {name for name in names if name.endswith(".table")}


def test_a_swapped_out_table_is_unmapped_at_once_unless_a_request_holds_it(make_adapter):
    adapter, path = make_adapter(reload_interval_s=None)
    first_map = adapter._state[0]._map  # the mapping, not the table: no request holds that
    assert mapped_tables() == {adapter._state[0].path}
    path.write_text("product,location,atp\n1000061,US01,42\n", encoding="utf-8")
    assert adapter.reload_now(in_subprocess=False)
    second = adapter._state[0]
    assert first_map.closed and mapped_tables() == {second.path}
    held = second  # a request in another thread, between reading the table and its lookup
    path.write_text("product,location,atp\n1000061,US01,43\n", encoding="utf-8")
    assert adapter.reload_now(in_subprocess=False)
    assert not held._map.closed and held.lookup(["1000061"], ["US01"]) == [42]
    assert adapter.unmap_retired() == 1  # still held: kept for the next poll
    third_path = adapter._state[0].path
    assert mapped_tables() == {held.path, third_path}
    held_path = held.path
    del held, second  # the request is done
    assert adapter.unmap_retired() == 0
    assert mapped_tables() == {third_path} and held_path != third_path
    assert adapter.fetch(batch(["1000061"], ["US01"])) == [43]


def test_a_broken_new_file_keeps_the_old_table_until_a_good_file_loads(make_adapter, caplog):
    adapter, path = make_adapter()
    caplog.set_level(logging.INFO, logger="atp_bridge.adapters.csv")
    path.write_text("product,location,atp\n1000061,US01,10\n1000061,US0", encoding="utf-8")
    wait_until(lambda: not adapter.health().ok)
    health = adapter.health()
    assert health.detail == f"{path}: line 3: expected 3 fields, got 2"
    assert health.info["last_error"] == health.detail and health.info["rows"] == 3
    assert adapter.fetch(batch(["10000211"], ["US01"])) == [7.5]  # still the old table
    time.sleep(0.3)  # several more polls of the same broken file
    warnings = [r for r in caplog.records
                if r.name == "atp_bridge.adapters.csv" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"csv adapter 'stores': {path}: line 3: expected 3 fields, got 2; keeping the previous data"]

    path.write_text("product,location,atp\n1000061,US01,12\n", encoding="utf-8")
    wait_until(lambda: adapter.health().ok)
    assert adapter.fetch(batch(["1000061", "10000211"], ["US01"])) == [12.0, None]
    assert adapter.health().info["last_error"] is None


def test_a_file_that_changes_while_being_read_is_not_swapped_in(make_adapter, monkeypatch):
    adapter, path = make_adapter(reload_interval_s=None)
    real = csv_build._path_signature
    calls = []

    def writer_strikes_during_the_read(p):  # a fault injected between parse and re-stat
        calls.append(p)
        if len(calls) == 2:  # the first call finds the file, the second re-stats after the parse
            with open(path, "a", encoding="utf-8") as f:
                f.write("10000211,US02,5\n")
        return real(p)

    path.write_text("product,location,atp\n1000061,US01,99\n", encoding="utf-8")
    monkeypatch.setattr(csv_build, "_path_signature", writer_strikes_during_the_read)
    assert adapter.reload_now(in_subprocess=False) is False
    assert len(calls) == 2
    monkeypatch.setattr(csv_build, "_path_signature", real)
    assert adapter.fetch(batch(["1000061"], ["US01"])) == [10.0]  # the old table
    assert adapter.health().ok
    assert adapter.reload_now() is True
    assert adapter.fetch(batch(["1000061", "10000211"], ["US01", "US02"])) == [99.0, None, None, 5.0]


def test_a_missing_file_at_start_makes_fetch_raise_unavailable_until_it_appears(make_adapter):
    adapter, path = make_adapter(None, name="erp-export")
    health = adapter.health()
    assert (health.ok, health.detail, health.info["rows"]) == (False, f"{path}: file not found", 0)
    with pytest.raises(AdapterUnavailable) as info:
        adapter.fetch(batch(["1000061"], ["US01"]))
    assert info.value.adapter == "erp-export"
    assert str(info.value) == f"adapter 'erp-export': no data: {path}: file not found"

    path.write_text(GOOD, encoding="utf-8")
    wait_until(lambda: adapter.health().ok)
    assert adapter.fetch(batch(["1000061"], ["US01"])) == [10.0]


def test_a_broken_file_at_start_makes_fetch_raise_unavailable_naming_the_line(make_adapter):
    adapter, path = make_adapter("product,location,atp\nA,L1,many\n")
    with pytest.raises(AdapterUnavailable, match=f"no data: {path}: line 2: atp 'many'"):
        adapter.fetch(batch(["A"], ["L1"]))
    assert adapter.reload_now() is False


def test_close_stops_the_polling_thread(make_adapter):
    adapter, path = make_adapter(name="closing")
    thread_names = lambda: {t.name for t in threading.enumerate()}  # noqa: E731
    assert "atp-bridge-csv-closing" in thread_names()
    adapter.close()
    assert "atp-bridge-csv-closing" not in thread_names()
    path.write_text("product,location,atp\n1000061,US01,1\n", encoding="utf-8")
    time.sleep(0.2)  # four poll intervals: nobody polls any more
    assert adapter.fetch(batch(["1000061"], ["US01"])) == [10.0]
    adapter.close()  # idempotent


# --- configuration -------------------------------------------------------------------

def test_options_schema_fills_defaults():
    assert CsvAdapter.options_schema().load({"path": "atp.csv"}) == {
        "path": "atp.csv", "delimiter": ",", "reload_interval_s": 2.0, "encoding": "utf-8-sig",
        "table_dir": None,
        "columns": {"product": "product", "location": "location", "atp": "atp"}}
    loaded = CsvAdapter.options_schema().load({"path": "x.csv", "columns": {"atp": "qty"}})
    assert loaded["columns"] == {"product": "product", "location": "location", "atp": "qty"}


@pytest.mark.parametrize("options, key", [
    ({}, "path"),
    ({"path": ""}, "path"),
    ({"path": "x.csv", "sep": ";"}, "sep"),
    ({"path": "x.csv", "delimiter": ";;"}, "delimiter"),
    ({"path": "x.csv", "delimiter": '"'}, "delimiter"),
    ({"path": "x.csv", "reload_interval_s": 0}, "reload_interval_s"),
    ({"path": "x.csv", "encoding": "klingon"}, "encoding"),
    ({"path": "x.csv", "columns": {"qty": "atp"}}, "columns"),
])
def test_options_schema_rejects_bad_and_unknown_keys(options, key):
    with pytest.raises(ValidationError) as info:
        CsvAdapter.options_schema().load(options)
    assert list(info.value.messages) == [key]


def test_from_config_resolves_a_relative_path_against_the_yaml_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stock.csv").write_text("sku|store|n\nA|S1|3\n", encoding="utf-8")
    options = CsvAdapter.options_schema().load({
        "path": "data/stock.csv", "delimiter": "|", "reload_interval_s": 0.5,
        "columns": {"product": "sku", "location": "store", "atp": "n"}})
    spec = AdapterSpec(name="stock", type="csv", locations=("S*",), match_on="product_id",
                       options=options, base_dir=str(tmp_path))
    adapter = CsvAdapter.from_config(spec)
    try:
        assert adapter.path == str(tmp_path / "data" / "stock.csv")
        assert (adapter.locations, adapter.match_on, adapter.reload_interval_s) == (("S*",), "product_id", 0.5)
        assert adapter.fetch(batch(["A"], ["S1"])) == [3.0]
    finally:
        adapter.close()


def test_the_embedded_sample_answers_the_newstore_spec_example():
    options = CsvAdapter.options_schema().load({"path": "sample.csv"})
    spec = AdapterSpec(name="sample", type="csv", options=options, base_dir=str(SAMPLE_DIR))
    adapter = CsvAdapter.from_config(spec)
    try:
        assert adapter.health().ok
        answer = adapter.fetch(batch(["1000061", "10000211"], ["US01", "US02", "DC01"]))
        assert answer == [10.0, 0.0, 25.0, 10.0, 0.0, 3.0]
        assert adapter.health().info["rows"] >= 12
    finally:
        adapter.close()
