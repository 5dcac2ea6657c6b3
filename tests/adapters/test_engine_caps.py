"""The engine's per-call caps on products and locations (adapters/engine/wire.py
``max_products`` / ``max_locations``): the call plan on its own, and a capped
adapter against a real loopback server that refuses calls over the caps."""
from collections import Counter

import pytest

from atp_bridge.adapters.engine.wire import calls
from tests.adapters.conftest import batch

PRODUCTS = [f"P{i:03d}" for i in range(23)]
LOCATIONS = [f"L{i:02d}" for i in range(11)]


def asked_pairs(plan) -> Counter:
    return Counter((p, loc) for call in plan for p in call.products for loc in call.locations)


@pytest.mark.parametrize("per", ["batch", "product", "location", "pair"])
@pytest.mark.parametrize("max_products,max_locations", [(5, 4), (1, 1), (5, None), (None, 4), (100, 100)])
def test_every_pair_is_asked_exactly_once_and_no_call_passes_a_cap(per, max_products, max_locations):
    plan = calls(batch(PRODUCTS, LOCATIONS), per, 30, max_products, max_locations)
    assert asked_pairs(plan) == Counter({(p, loc): 1 for p in PRODUCTS for loc in LOCATIONS})
    assert all(len(c.products) <= (max_products or len(PRODUCTS)) for c in plan)
    assert all(len(c.locations) <= (max_locations or len(LOCATIONS)) for c in plan)


def test_a_batch_is_cut_along_both_axes_in_runs_of_the_caps():
    plan = calls(batch(PRODUCTS, LOCATIONS), "batch", 10_000, max_products=10, max_locations=5)
    assert [(c.products[0], len(c.products), c.locations[0], len(c.locations)) for c in plan] == [
        ("P000", 10, "L00", 5), ("P010", 10, "L00", 5), ("P020", 3, "L00", 5),
        ("P000", 10, "L05", 5), ("P010", 10, "L05", 5), ("P020", 3, "L05", 5),
        ("P000", 10, "L10", 1), ("P010", 10, "L10", 1), ("P020", 3, "L10", 1)]


def test_batch_size_still_bounds_the_pairs_of_a_capped_call():
    plan = calls(batch(PRODUCTS, LOCATIONS), "batch", 12, max_products=10, max_locations=5)
    # runs of 5 locations: 12 // 5 = 2 products a call; the last run of 1 location: 10 (the cap)
    assert [(len(c.products), len(c.locations)) for c in plan][:3] == [(2, 5), (2, 5), (2, 5)]
    assert [(len(c.products), len(c.locations)) for c in plan if len(c.locations) == 1] == [(10, 1), (10, 1), (3, 1)]
    assert all(len(c) <= 12 for c in plan if len(c.locations) == 5)


def test_without_caps_the_plan_is_the_one_it_always_was():
    b = batch(PRODUCTS, LOCATIONS)
    assert [(c.products, c.locations) for c in calls(b, "batch", 30)] == [
        (tuple(PRODUCTS[i:i + 2]), tuple(LOCATIONS)) for i in range(0, 23, 2)]
    assert [(c.product, c.locations) for c in calls(b, "product", 30)] == [(p, tuple(LOCATIONS)) for p in PRODUCTS]
    assert [(c.location, c.products) for c in calls(b, "location", 30)] == [(loc, tuple(PRODUCTS)) for loc in LOCATIONS]


def test_per_product_calls_keep_their_product_and_per_location_calls_their_location():
    b = batch(["A", "B"], LOCATIONS)
    plan = calls(b, "product", 30, max_locations=4)
    assert [(c.product, len(c.locations)) for c in plan] == [("A", 4), ("A", 4), ("A", 3), ("B", 4), ("B", 4), ("B", 3)]
    plan = calls(batch(PRODUCTS, ["S1"]), "location", 30, max_products=10)
    assert [(c.location, len(c.products)) for c in plan] == [("S1", 10), ("S1", 10), ("S1", 3)]


@pytest.mark.parametrize("cap", [0, -1, 2.5, True, "10"])
def test_a_cap_that_is_not_a_whole_number_of_at_least_one_is_refused(rest, cap):
    wire = rest(path="/q", body={"p": "{{ products }}"}, extract={"rows": "rows", "product": "p",
                                                                 "location": "l", "atp": "a"}).wire
    with pytest.raises(ValueError, match="max_products must be a whole number of at least 1"):
        wire.capped(max_products=cap)


def capped_erp(erp, seen, limit=3):
    """A JSON API that takes at most ``limit`` products and locations per call."""
    body = seen.json()
    if len(body["products"]) > limit or len(body["locations"]) > limit:
        return 400, {"error": {"message": f"at most {limit} products and {limit} locations per call"}}
    erp.asked.append(body)
    return 200, {"rows": [{"p": p, "l": loc, "a": erp.stock[(p, loc)]} for p in body["products"]
                          for loc in body["locations"] if (p, loc) in erp.stock]}


ENGINE = {"path": "/q", "body": {"products": "{{ products }}", "locations": "{{ locations }}"},
          "extract": {"rows": "rows", "product": "p", "location": "l", "atp": "a"}}


def test_a_capped_adapter_asks_within_the_caps_and_answers_every_pair_by_position(erp, rest):
    erp.respond, erp.asked = capped_erp, []
    products, locations = [f"P{i}" for i in range(7)], [f"S{i}" for i in range(5)]
    erp.stock = {(p, loc): i * 10 + j for i, p in enumerate(products) for j, loc in enumerate(locations)}
    adapter = rest(max_concurrency=3, **ENGINE)
    with pytest.raises(Exception, match="at most 3 products and 3 locations per call"):
        adapter.fetch(batch(products, locations))  # uncapped: one call, refused
    adapter.wire = adapter.wire.capped(max_products=3, max_locations=3)
    erp.asked.clear()
    answer = adapter.fetch(batch(products, locations))
    assert answer == [i * 10 + j for i in range(7) for j in range(5)]
    assert len(erp.asked) == 6  # 3 runs of products x 2 runs of locations
    assert Counter((p, loc) for b in erp.asked for p in b["products"] for loc in b["locations"]) == \
        Counter({(p, loc): 1 for p in products for loc in locations})


def test_max_products_and_max_locations_are_keys_of_a_rest_adapter(erp, rest):
    erp.respond, erp.asked = capped_erp, []
    products, locations = [f"P{i}" for i in range(7)], [f"S{i}" for i in range(5)]
    erp.stock = {(p, loc): i * 10 + j for i, p in enumerate(products) for j, loc in enumerate(locations)}
    adapter = rest(max_products=3, max_locations=3, **ENGINE)
    assert adapter.fetch(batch(products, locations)) == [i * 10 + j for i in range(7) for j in range(5)]
    assert sorted((len(b["products"]), len(b["locations"])) for b in erp.asked) == \
        [(1, 2), (1, 3), (3, 2), (3, 2), (3, 3), (3, 3)]


@pytest.mark.parametrize("options,key,message", [
    ({"max_products": 0, **ENGINE}, "max_products", "Must be greater than or equal to 1"),
    ({"max_locations": "many", **ENGINE}, "max_locations", "Not a valid integer."),
    ({"max_products": 5, "per": "product", **ENGINE}, "max_products", "Has no effect with per: product"),
    ({"max_locations": 5, "per": "pair", **ENGINE}, "max_locations", "Has no effect with per: pair"),
    ({"max_products": 5}, "max_products", "Only with the engine's templates"),
])
def test_a_bad_cap_names_its_key(options, key, message):
    from marshmallow import ValidationError

    from atp_bridge.adapters.rest_options import RestOptionsSchema
    with pytest.raises(ValidationError) as exc:
        RestOptionsSchema().load({"url": "http://erp.example/atp", **options})
    assert key in exc.value.messages and str(exc.value.messages[key]).find(message) >= 0, exc.value.messages
