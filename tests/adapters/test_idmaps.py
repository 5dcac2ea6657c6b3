"""Id maps (location_map / product_map, inline or from a file) for every adapter type:
the source sees its own ids, NewStore gets its own back."""
import pytest

from atp_bridge.adapters.base import Batch
from atp_bridge.adapters.idmaps import IdMaps
from atp_bridge.bridge import Bridge
from atp_bridge.config import load_config
from atp_bridge.errors import ConfigError


def answer(config_path, pids, locations):
    bridge = Bridge.from_config(load_config(config_path))
    try:
        return bridge.answer(pids, pids, locations).atps
    finally:
        bridge.close()


def test_a_rest_erp_is_asked_with_its_own_ids_and_answers_land_on_newstore_s(erp, config_file):
    erp.stock = {("MAT-1", "1710"): 4, ("MAT-2", "1710"): 1, ("MAT-1", "1720"): 9}
    path = config_file({"adapters": [{
        "name": "erp", "type": "rest", "url": f"{erp.url}/atp",
        "location_map": {"US01": "1710", "US02": "1720"},
        "product_map": {"sku-1": "MAT-1", "sku-2": "MAT-2"}}]})
    assert answer(path, ["sku-1", "sku-2"], ["US01", "US02", "DC9"]) == [4, 9, 0, 1, 0, 0]
    (seen,) = erp.requests("/atp")
    sent = {(i["product"], i["location"]) for i in seen.json()["items"]}
    assert sent == {("MAT-1", "1710"), ("MAT-1", "1720"), ("MAT-1", "DC9"),  # DC9: unmapped, as is
                    ("MAT-2", "1710"), ("MAT-2", "1720"), ("MAT-2", "DC9")}


def test_two_newstore_locations_mapped_to_one_source_location_both_get_its_value(tmp_path, config_file):
    (tmp_path / "stock.csv").write_text("product,location,atp\nA,WH1,6\n")
    path = config_file({"adapters": [{"name": "csv", "type": "csv", "path": "stock.csv",
                                      "location_map": {"US01": "WH1", "US02": "WH1"}}]})
    assert answer(path, ["A"], ["US01", "US02", "WH1"]) == [6, 6, 6]


def test_a_map_file_is_read_and_inline_entries_win(tmp_path, config_file):
    (tmp_path / "stock.csv").write_text("product,location,atp\nA,WH1,6\nA,WH2,2\nM-B,WH1,5\n")
    (tmp_path / "locations.csv").write_text("newstore,source\nUS01,WH2\nUS02,WH2\n")
    (tmp_path / "products.csv").write_text("newstore_id,source_id\nB,M-B\n")
    path = config_file({"adapters": [{"name": "csv", "type": "csv", "path": "stock.csv",
                                      "location_map_file": "locations.csv", "location_map": {"US01": "WH1"},
                                      "product_map_file": "products.csv"}]})
    assert answer(path, ["A", "B"], ["US01", "US02"]) == [6, 2, 5, 0]


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read {path}: No such file or directory"),
    ("newstore,source\nUS01\n", "{path}: line 2: expected two non-empty columns newstore_id,source_id"),
    ("newstore,source\nUS01,\n", "{path}: line 2: expected two non-empty columns newstore_id,source_id"),
])
def test_a_missing_or_broken_map_file_is_a_config_problem_with_file_and_key(tmp_path, config_file,
                                                                             content, problem):
    if content is not None:
        (tmp_path / "locations.csv").write_text(content)
    path = config_file({"adapters": [{"name": "csv", "type": "csv", "path": "stock.csv",
                                      "location_map_file": "locations.csv"}]})
    (tmp_path / "stock.csv").write_text("product,location,atp\nA,WH1,6\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    expected = problem.format(path=tmp_path / "locations.csv")
    assert e.value.problems == [f"{path}: adapters[0].location_map_file: {expected}"]


def test_an_empty_map_id_is_a_config_problem(config_file):
    path = config_file({"adapters": [{"name": "csv", "type": "csv", "path": "s.csv",
                                      "location_map": {"US01": ""}}]})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert any("location_map" in p and "US01" in p for p in e.value.problems), e.value.problems


def test_apply_keeps_order_and_length_and_leaves_unmapped_ids():
    maps = IdMaps({"a": "A"}, {"s1": "1710/0001"})
    b = maps.apply(Batch(["a", "b"], ["s1", "s2"], 5.0))
    assert (b.products, b.locations, b.deadline) == (["A", "b"], ["1710/0001", "s2"], 5.0)
    assert not IdMaps() and IdMaps({}, {"x": "y"})
