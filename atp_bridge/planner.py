"""Routing pairs to adapters, and merging their answers.

A request is a grid: ``P`` products x ``L`` locations, product-major. Each
adapter is routed the locations its glob patterns match (all products), so
its batch is a smaller grid and its answer a flat list over that grid. The
merge writes those answers into one flat list of ``P*L`` values.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from adapters.base import Adapter, Batch, WholeNumbers

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
    blocking: tuple = ()
    inline: tuple = ()
    names: tuple[str, ...] = ()


class Planner:
    """Routes locations to adapters, in priority order; remembers recent plans.

    NewStore asks about the same location lists over and over, so a plan is
    computed once per distinct list (LRU), not per request.
    """

    def __init__(self, adapters: Sequence[Adapter], safety_stock=None):
        self.adapters = tuple(adapters)
        self.safety_stock = safety_stock
        self.routes = lru_cache(maxsize=1024)(self._routes)

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


def finalize(grid: list, safety: Sequence[float] | None, unknown=None) -> list:
    """Apply per-location safety stock, clamp at 0, floor to int.

    ``safety`` is aligned with the request's locations (None: no safety stock).
    Unknown pairs (None) become ``unknown``: None to tell them apart
    (``omit_unknown``), else 0.
    """
    if not safety and type(grid) is WholeNumbers:  # ints >= 0 already: fill in the unknowns only
        if unknown is None or None not in grid:  # `in` scans in C
            return list(grid)
        return [unknown if v is None else v for v in grid]
    floor = math.floor
    if not safety:
        return [unknown if v is None else (floor(v) if v > 0 else 0) for v in grid]
    per_pair = list(safety) * (len(grid) // len(safety))
    return [unknown if v is None else (floor(v - s) if v > s else 0) for v, s in zip(grid, per_pair)]
