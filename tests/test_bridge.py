"""Planner, merge, safety stock and the failure rule, through the webhook."""
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp_bridge import create_app, planner
from tests import fake_adapters

BODY = {"products": [{"product_id": "A", "external_identifier": "A"},
                     {"product_id": "B", "external_identifier": "B"}],
        "fulfillment_locations": ["S1", "S2", "DC"]}


def ask(config_file, adapters, body=BODY, **server):
    client = create_app(str(config_file({**server, "adapters": adapters}))).test_client()
    resp = client.post("/availabilities", json=body)
    assert resp.status_code == 200
    got = {(r["product_id"], r["fulfillment_location"]): r["atp"] for r in resp.get_json()["availabilities"]}
    return got, resp.headers.get("X-ATP-Degraded")


STORES = {"name": "stores", "type": "static", "locations": ["S*"],
          "values": {"S1": {"A": 5, "B": 1}, "S2": {"A": 2}}}
ERP = {"name": "erp", "type": "static", "values": {"S1": {"A": 7}, "S2": {"B": 4}, "DC": {"A": 100, "B": 30}}}


def test_pairs_are_routed_by_location_pattern_in_one_batch_per_adapter(config_file):
    ask(config_file, [STORES, ERP])
    calls = {name: (list(b.products), list(b.locations)) for name, b in fake_adapters.CALLS}
    assert len(fake_adapters.CALLS) == 2
    assert calls == {"stores": (["A", "B"], ["S1", "S2"]), "erp": (["A", "B"], ["S1", "S2", "DC"])}


def test_an_adapter_whose_patterns_match_no_location_is_not_called(config_file):
    ask(config_file, [{**STORES, "locations": ["X*"]}, ERP])
    assert [name for name, _ in fake_adapters.CALLS] == ["erp"]


@pytest.mark.parametrize("mode,expected", [
    ("first", {("A", "S1"): 5, ("A", "S2"): 2, ("A", "DC"): 100, ("B", "S1"): 1, ("B", "S2"): 4, ("B", "DC"): 30}),
    ("sum", {("A", "S1"): 12, ("A", "S2"): 2, ("A", "DC"): 100, ("B", "S1"): 1, ("B", "S2"): 4, ("B", "DC"): 30}),
    ("min", {("A", "S1"): 5, ("A", "S2"): 2, ("A", "DC"): 100, ("B", "S1"): 1, ("B", "S2"): 4, ("B", "DC"): 30}),
    ("max", {("A", "S1"): 7, ("A", "S2"): 2, ("A", "DC"): 100, ("B", "S1"): 1, ("B", "S2"): 4, ("B", "DC"): 30}),
])
def test_merge_modes_combine_known_values_in_priority_order(config_file, mode, expected):
    got, degraded = ask(config_file, [STORES, ERP], merge=mode)
    assert got == expected and degraded is None


def test_priority_follows_the_adapter_order(config_file):
    got, _ = ask(config_file, [ERP, STORES], merge="first")
    assert got[("A", "S1")] == 7


def test_safety_stock_is_subtracted_per_location_and_clamped_at_zero(config_file):
    got, _ = ask(config_file, [ERP], safety_stock={"default": 1, "locations": {"DC": 40}})
    assert got == {("A", "S1"): 6, ("A", "S2"): 0, ("A", "DC"): 60,
                   ("B", "S1"): 0, ("B", "S2"): 3, ("B", "DC"): 0}


def test_negative_and_fractional_source_values_become_non_negative_ints(config_file):
    odd = {"name": "odd", "type": "static", "values": {"S1": {"A": -3, "B": 2.9}, "S2": {"A": 0.2}}}
    got, _ = ask(config_file, [odd])
    assert got[("A", "S1")] == 0 and got[("B", "S1")] == 2 and got[("A", "S2")] == 0
    assert all(type(v) is int for v in got.values())


@pytest.mark.parametrize("mode,reason", [("raise", "error:erp"), ("short", "error:erp"),
                                         ("bug", "error:erp"), ("sleep", "timeout:erp")])
def test_any_adapter_failure_zeroes_every_pair_with_a_reason(config_file, caplog, mode, reason):
    with caplog.at_level(logging.WARNING, logger="atp_bridge"):
        got, degraded = ask(config_file, [STORES, {"name": "erp", "type": "failing", "mode": mode, "sleep_s": 0.5}],
                            deadline_ms=100)
    assert set(got.values()) == {0} and len(got) == 6
    assert degraded == reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "degraded" in r.getMessage()]
    assert len(warnings) == 1 and "'erp'" in warnings[0]


def test_a_slow_adapter_is_cut_off_at_the_deadline(config_file):
    fake_adapters.SPANS.clear()
    got, degraded = ask(config_file, [{"name": "cut-off", "type": "failing", "mode": "sleep", "sleep_s": 2}],
                        deadline_ms=150)
    assert degraded == "timeout:cut-off" and set(got.values()) == {0}
    # answered while the adapter was still at work: its call has not ended yet
    assert [name for name, _, _ in fake_adapters.SPANS if name == "cut-off"] == []


def test_zero_failed_zeroes_only_the_failed_adapters_pairs(config_file):
    failing = {"name": "dc", "type": "failing", "locations": ["DC"]}
    got, degraded = ask(config_file, [STORES, failing], on_error="zero_failed")
    assert degraded == "error:dc"
    assert got == {("A", "S1"): 5, ("A", "S2"): 2, ("A", "DC"): 0, ("B", "S1"): 1, ("B", "S2"): 0, ("B", "DC"): 0}


def test_zero_failed_keeps_failed_pairs_in_the_answer_even_with_omit_unknown(config_file):
    failing = {"name": "dc", "type": "failing", "locations": ["DC"]}
    got, _ = ask(config_file, [STORES, failing], on_error="zero_failed", omit_unknown=True)
    assert got == {("A", "S1"): 5, ("A", "S2"): 2, ("A", "DC"): 0, ("B", "S1"): 1, ("B", "DC"): 0}


def test_adapters_run_concurrently_under_one_deadline(config_file):
    slow = [{"name": f"slow{i}", "type": "failing", "mode": "sleep", "sleep_s": 0.3} for i in range(3)]
    fake_adapters.SPANS.clear()
    got, degraded = ask(config_file, slow, deadline_ms=5000, merge="sum")
    assert degraded is None and got[("A", "S1")] == 3
    spans = {name: (start, end) for name, start, end in fake_adapters.SPANS if name.startswith("slow")}
    assert sorted(spans) == ["slow0", "slow1", "slow2"]
    # in parallel: every call started before any of them ended (in a row, none would overlap)
    assert max(start for start, _ in spans.values()) < min(end for _, end in spans.values())


def test_an_internal_bug_is_an_all_zero_answer_not_a_500(config_file, monkeypatch):
    monkeypatch.setattr(planner, "finalize", lambda *a: 1 / 0)
    monkeypatch.setattr("atp_bridge.bridge.finalize", lambda *a: 1 / 0)
    got, degraded = ask(config_file, [ERP])
    assert degraded == "internal" and set(got.values()) == {0} and len(got) == 6


@settings(max_examples=300, deadline=None)
@given(grid=st.lists(st.one_of(st.none(), st.integers(0, 10**12))), unknown=st.sampled_from([None, 0]))
def test_finalize_takes_whole_numbers_as_they_are_and_answers_like_the_general_rule(grid, unknown):
    from atp_bridge.adapters.base import WholeNumbers
    whole = WholeNumbers(grid)
    out = planner.finalize(whole, None, unknown)
    assert out == planner.finalize(list(grid), None, unknown)
    assert out is not whole and type(out) is list  # a copy: holds may zero pairs in it
