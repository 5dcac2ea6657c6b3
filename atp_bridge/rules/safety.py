"""Safety stock: units held back per pair, product, location or by default.

The most specific rule wins: a (product, location) pair, then the product,
then the location, then ``default``. Rules come from the config
(``safety_stock: {default, locations, products}``) and from an optional CSV
file (``product,location,units``, either id may be ``*``); where both name
the same key the file wins (it is the one that changes). Product ids are
NewStore's ``product_id``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from atp_bridge.rules.files import RuleFileError, number, raise_bad_rows, read_rows

COLUMNS = ("product", "location", "units")


class SafetyRules:
    """One immutable set of safety-stock rules (see the module docstring)."""

    __slots__ = ("default", "locations", "products", "pairs", "per_product", "whole")

    def __init__(self, default: float = 0, locations: Mapping[str, float] | None = None,
                 products: Mapping[str, float] | None = None,
                 pairs: Mapping[str, Mapping[str, float]] | None = None):
        # whole units as ints, so that "atp - units" stays an int on the fast paths
        self.default = _units(default)
        self.locations = {k: _units(v) for k, v in (locations or {}).items()}
        self.products = {k: _units(v) for k, v in (products or {}).items()}
        self.pairs = {p: {k: _units(v) for k, v in by_loc.items()}  # product -> {location: units}
                      for p, by_loc in (pairs or {}).items()}
        # the products whose rules go below the location level: the rest follow the plan's tuple
        self.per_product = self.products.keys() | self.pairs.keys()
        # every value an int: "atp - units" needs no floor (planner.finalize's fast path)
        self.whole = all(type(v) is int for v in (self.default, *self.locations.values(),
                                                   *self.products.values(),
                                                   *(u for d in self.pairs.values() for u in d.values())))

    def for_location(self, location: str) -> float:
        return self.locations.get(location, self.default)

    def for_pair(self, product: str, location: str) -> float:
        by_loc = self.pairs.get(product)
        if by_loc is not None and location in by_loc:
            return by_loc[location]
        if product in self.products:
            return self.products[product]
        return self.locations.get(location, self.default)

    def per_pair(self, pids: Sequence[str], locations: Sequence[str],
                 by_location: Sequence[float] | None) -> Sequence[float] | None:
        """Safety stock for the flat product-major grid ``pids x locations``.

        ``by_location`` is the plan's per-location tuple (None: all 0). Returns it
        as it is when no product here has a rule of its own (``finalize`` spreads
        a per-location tuple over the products), else one value per pair.
        """
        special = self.per_product
        if not special or special.isdisjoint(pids):
            return by_location
        n_l = len(locations)
        base = list(by_location) if by_location else [0] * n_l
        get_units, get_pairs = self.products.get, self.pairs.get
        out: list[float] = []
        for pid in pids:
            units, by_loc = get_units(pid), get_pairs(pid)
            if units is None and by_loc is None:
                out += base
                continue
            row = base if units is None else [units] * n_l
            # the pair's units where there is a pair rule, else the row's: in C
            out += row if by_loc is None else map(by_loc.get, locations, row)
        return out if any(out) else None

    @property
    def size(self) -> int:
        return len(self.locations) + len(self.products) + sum(map(len, self.pairs.values()))


def _units(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def read_safety_file(path: str) -> dict:
    """The rules in a safety-stock CSV file: ``{default?, locations, products, pairs}``."""
    out: dict = {"locations": {}, "products": {}, "pairs": {}}
    bad = []
    for line, (product, location, units) in read_rows(path, COLUMNS):
        if not product or not location:
            bad.append(f"line {line}: product and location must not be empty (use * for any)")
            continue
        try:
            value = number(units)
        except ValueError as e:
            bad.append(f"line {line}: units {units!r}: {e}")
            continue
        if product == "*" and location == "*":
            out["default"] = value
        elif product == "*":
            out["locations"][location] = value
        elif location == "*":
            out["products"][product] = value
        else:
            out["pairs"].setdefault(product, {})[location] = value
    raise_bad_rows(path, bad)
    return out


def build_rules(config, file_rules: dict | None = None) -> SafetyRules:
    """The live rules: ``config`` (a :class:`~atp_bridge.config_types.SafetyStock`),
    then the file's rules over them."""
    f = file_rules or {}
    pairs: dict[str, dict[str, float]] = {}
    for p, by_loc in f.get("pairs", {}).items():
        pairs[p] = dict(by_loc)
    return SafetyRules(default=f.get("default", config.default),
                       locations={**config.locations, **f.get("locations", {})},
                       products={**config.products, **f.get("products", {})},
                       pairs=pairs)


__all__ = ["SafetyRules", "read_safety_file", "build_rules", "RuleFileError"]
