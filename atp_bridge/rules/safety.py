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

    __slots__ = ("default", "locations", "products", "pairs", "per_product")

    def __init__(self, default: float = 0, locations: Mapping[str, float] | None = None,
                 products: Mapping[str, float] | None = None,
                 pairs: Mapping[str, Mapping[str, float]] | None = None):
        self.default = default
        self.locations = dict(locations or {})
        self.products = dict(products or {})
        self.pairs = {p: dict(by_loc) for p, by_loc in (pairs or {}).items()}  # product -> {location: units}
        # the products whose rules go below the location level: the rest follow the plan's tuple
        self.per_product = self.products.keys() | self.pairs.keys()

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
        base = list(by_location) if by_location else [0] * len(locations)
        out: list[float] = []
        for pid in pids:
            if pid not in special:
                out.extend(base)
                continue
            row = [self.products[pid]] * len(locations) if pid in self.products else base
            by_loc = self.pairs.get(pid)
            if by_loc:
                row = [by_loc.get(loc, s) for loc, s in zip(locations, row)]
            out.extend(row)
        return out if any(out) else None

    @property
    def size(self) -> int:
        return len(self.locations) + len(self.products) + sum(map(len, self.pairs.values()))


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
