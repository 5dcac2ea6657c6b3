"""The planner's cache of plans: hits for repeated location lists, bounded in
size however many and however long the lists callers send."""
from atp_bridge.planner import Planner, plan_bytes
from tests.fake_adapters import StaticAdapter


def planner(**limits):
    stores = StaticAdapter("stores", locations=["US*"])
    everything = StaticAdapter("everything", locations=["*"])
    p = Planner([stores, everything])
    for name, value in limits.items():
        setattr(p, name, value)
    return p


def names(plan):
    return [(r.adapter.name, r.locations) for r in plan]


def test_a_repeated_small_location_list_is_planned_once_and_then_hit():
    p = planner()
    first = p.routes(("US01", "DC01", "US02"))
    again = p.routes(tuple(["US01", "DC01", "US02"]))  # an equal tuple, as each request builds one
    assert again is first
    assert names(first) == [("stores", ("US01", "US02")), ("everything", ("US01", "DC01", "US02"))]
    assert p.cached == (1, plan_bytes(("US01", "DC01", "US02"), 2))


def test_a_list_of_50_000_long_locations_is_planned_per_request_and_not_cached():
    p = planner()
    big = tuple(f"US-{i:06d}".ljust(90, "x") for i in range(50_000))
    plan = p.routes(big)
    assert p.routes(big) is not plan
    assert names(p.routes(big)) == names(plan) and len(plan[0].locations) == 50_000
    assert p.cached == (0, 0)


def test_the_cache_holds_no_more_than_its_byte_budget():
    p = planner(max_bytes=200_000, max_plan_bytes=20_000)
    sizes = []
    for r in range(500):
        locs = tuple(f"R{r}-{i}".ljust(40, "x") for i in range(1 + r % 60))
        p.routes(locs)
        sizes.append(plan_bytes(locs, 2))
    plans, held = p.cached
    assert held <= 200_000 and held > 200_000 - max(sizes)
    assert 0 < plans < 500


def test_the_cache_holds_no_more_than_max_plans():
    p = planner(max_plans=16)
    for r in range(100):
        p.routes((f"US{r}",))
    assert p.cached[0] == 16
    assert p.routes(("US99",)) is p.routes(("US99",))  # the newest are kept


def test_a_plan_hit_since_the_last_eviction_outlives_newer_unused_ones():
    p = planner(max_plans=4)
    hot = p.routes(("US01", "US02"))
    for r in range(40):
        assert p.routes(("US01", "US02")) is hot
        p.routes((f"DC{r}",))
    assert p.cached[0] == 4
    assert p.routes(("US01", "US02")) is hot


def test_an_adapter_remembers_short_location_names_only_and_starts_over_when_full():
    a = StaticAdapter("stores", locations=["US*"])
    long_name = "US" + "x" * 200
    assert a.serves(long_name) and a.serves("US01") and not a.serves("DC01")
    assert set(a._serves) == {"US01", "DC01"}
    for i in range(100_000 - 2):
        a.serves(f"L{i}")
    assert len(a._serves) == 100_000
    assert a.serves("US02")  # the 100,001st name: the table starts over with it
    assert a._serves == {"US02": True}
