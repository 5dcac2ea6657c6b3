"""Routing pairs to adapters, and merging their answers.

A request is a grid: ``P`` products x ``L`` locations, product-major. Each
adapter is routed the locations its glob patterns match (all products), so
its batch is a smaller grid and its answer a flat list over that grid. The
merge writes those answers into one flat list of ``P*L`` values.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence

from atp_bridge.adapters.base import Adapter, Batch, WholeNumbers

# merge mode -> how a later (lower-priority) value combines with the current one
_COMBINE = {
    "first": None,  # keep the first known value: handled without a call
    "sum": lambda cur, v: cur + v,
    "min": min,
    "max": max,
}


class Route:
    """One adapter's share of a request's locations."""

    __slots__ = ("adapter", "loc_idx", "locations", "aligned", "by_product_id")

    def __init__(self, adapter: Adapter, loc_idx: tuple[int, ...], locations: tuple[str, ...],
                 n_locations: int):
        self.adapter = adapter
        self.loc_idx = loc_idx
        self.locations = locations
        self.aligned = len(loc_idx) == n_locations  # routed every location
        self.by_product_id = adapter.match_on == "product_id"

    def batch(self, pids: Sequence[str], eids: Sequence[str], deadline: float) -> Batch:
        """This route's batch: the request's products (by the adapter's key) x its locations."""
        return Batch(pids if self.by_product_id else eids, self.locations, deadline)

    def positions(self, n_products: int, n_locations: int) -> Sequence[int]:
        """Indexes into the request's flat P*L grid, in the adapter's batch order."""
        if self.aligned:
            return range(n_products * n_locations)
        idx = self.loc_idx
        return [base + i for base in range(0, n_products * n_locations, n_locations) for i in idx]


class Plan(tuple):
    """The routes for one list of locations, and their safety stock (None: all 0).

    ``blocking`` and ``inline`` are the ``(index, route)`` pairs whose adapter
    does / does not block (thread pool / called in the request's thread);
    ``names`` the adapters' names, in priority order.
    """

    safety: tuple[float, ...] | None = None
    size: int = 0  # estimated bytes, set when the plan is cached
    used: bool = False  # hit since the cache last looked at it for eviction
    blocking: tuple = ()
    inline: tuple = ()
    names: tuple[str, ...] = ()


class Planner:
    """Routes locations to adapters, in priority order; remembers recent plans.

    NewStore asks about the same location lists over and over, so a plan is
    computed once per distinct list, not per request: a cache of at most
    ``max_plans`` plans and ``max_bytes`` (estimated) in all, evicting the
    least recently used first (approximately: see :meth:`_insert`). A list
    whose plan would take more than ``max_plan_bytes`` (some 12,000 short
    location names) is planned for its request only: such lists are rare,
    and caching them let distinct large lists grow a worker by gigabytes.
    """

    max_plans = 1024
    max_bytes = 32 * 1024 * 1024
    max_plan_bytes = 2 * 1024 * 1024

    def __init__(self, adapters: Sequence[Adapter], safety_stock=None):
        self.adapters = tuple(adapters)
        self.safety_stock = safety_stock
        self._plans: OrderedDict[tuple[str, ...], Plan] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # taken by misses only

    def routes(self, locations: tuple[str, ...]) -> Plan:
        """The plan for ``locations``, from the cache when it is there."""
        plan = self._plans.get(locations)
        if plan is not None:
            plan.used = True  # a flag, not a reorder: the hit path stays a dict lookup
            return plan
        plan = self._routes(locations)
        size = plan_bytes(locations, len(plan))
        if size <= self.max_plan_bytes:
            plan.size = size
            with self._lock:
                self._insert(locations, plan)
        return plan

    def _insert(self, locations: tuple[str, ...], plan: Plan) -> None:
        """Cache ``plan``, evicting the oldest plans not used since the last pass
        (second chance: a close LRU whose hits need no lock and no reordering)."""
        plans = self._plans
        if locations in plans:  # another thread planned the same list meanwhile
            return
        plans[locations] = plan
        self._bytes += plan.size
        while self._bytes > self.max_bytes or len(plans) > self.max_plans:
            key, old = plans.popitem(last=False)
            if old.used:
                old.used = False
                plans[key] = old
            else:
                self._bytes -= old.size

    def forget(self) -> None:
        """Drop every cached plan (the safety stock they hold changed)."""
        with self._lock:
            self._plans = OrderedDict()
            self._bytes = 0

    @property
    def cached(self) -> tuple[int, int]:
        """``(plans, estimated bytes)`` held by the cache."""
        return len(self._plans), self._bytes

    def _routes(self, locations: tuple[str, ...]) -> Plan:
        out = []
        for adapter in self.adapters:
            idx = tuple(i for i, loc in enumerate(locations) if adapter.serves(loc))
            if idx:
                out.append(Route(adapter, idx, tuple(locations[i] for i in idx), len(locations)))
        plan = Plan(out)
        plan.blocking = tuple((i, r) for i, r in enumerate(out) if r.adapter.blocking)
        plan.inline = tuple((i, r) for i, r in enumerate(out) if not r.adapter.blocking)
        plan.names = tuple(r.adapter.name for r in out)
        if self.safety_stock is not None:
            safety = tuple(self.safety_stock.for_location(loc) for loc in locations)
            plan.safety = safety if any(safety) else None
        return plan


# estimated bytes of a cached plan: the plan, its routes and the cache entry;
# per location the str object's header (its characters are counted apart),
# its slot in the key and in the safety stock; per route and location an
# index (tuple slot and int) and a slot in the route's locations
_PLAN_BYTES = 512
_LOCATION_BYTES = 49 + 8 + 8
_ROUTE_LOCATION_BYTES = 8 + 28 + 8


def plan_bytes(locations: tuple[str, ...], n_routes: int) -> int:
    """A cached plan's estimated size: what the cache keeps alive for it."""
    per_location = _LOCATION_BYTES + n_routes * _ROUTE_LOCATION_BYTES
    return _PLAN_BYTES + sum(map(len, locations)) + len(locations) * per_location


def merge(grid: list, answer: Sequence, positions: Sequence[int], mode: str) -> None:
    """Fold one adapter's ``answer`` into ``grid`` (None = unknown) in place."""
    combine = _COMBINE[mode]
    for k, v in zip(positions, answer):
        if v is None:
            continue
        cur = grid[k]
        if cur is None:
            grid[k] = v
        elif combine is not None:
            grid[k] = combine(cur, v)


def finalize(grid: list, safety: Sequence[float] | None, unknown=None, whole_safety: bool = False) -> list:
    """Apply safety stock, clamp at 0, floor to int.

    ``safety`` is aligned with the request's locations, or with the whole grid
    (one value per pair: ``SafetyRules.per_pair``); None: no safety stock.
    ``whole_safety``: every safety value is an int (``SafetyRules.whole``).
    Unknown pairs (None) become ``unknown``: None to tell them apart
    (``omit_unknown``), else 0.
    """
    if not safety and type(grid) is WholeNumbers:  # ints >= 0 already: fill in the unknowns only
        if unknown is None or None not in grid:  # `in` scans in C
            return list(grid)
        return [unknown if v is None else v for v in grid]
    if whole_safety and type(grid) is WholeNumbers and None not in grid:
        # ints on both sides and all known: subtract and clamp, nothing to floor
        per_pair = safety if len(safety) == len(grid) else list(safety) * (len(grid) // len(safety))
        return [v - s if v > s else 0 for v, s in zip(grid, per_pair)]
    floor = math.floor
    if not safety:
        return [unknown if v is None else (floor(v) if v > 0 else 0) for v in grid]
    per_pair = safety if len(safety) == len(grid) else list(safety) * (len(grid) // len(safety))
    return [unknown if v is None else (floor(v - s) if v > s else 0) for v, s in zip(grid, per_pair)]
