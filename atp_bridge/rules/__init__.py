"""ATP rules applied after the merge: safety stock, bundles, caps (holds: atp_bridge.holds).

In this order, for every pair of a request:

1. safety stock: the most specific of pair, product, location, default;
   clamped at 0 and floored (``planner.finalize``); then holds and, with
   ``on_error: zero_failed``, the failed adapter's zeros;
2. bundles: computed from their components' ATP of step 1
   (:mod:`atp_bridge.rules.bundles`), then the bundle's own safety stock;
3. caps: never more than N of a product / at a location;
4. holds: a held pair is 0 (holds on a bundle's components already made it 0).

Nothing here runs for a config without these keys: :attr:`Rules.active` is
False and the bridge keeps its plain path.
"""
from __future__ import annotations

from collections.abc import Sequence

from atp_bridge.rules.bundles import Bundles, read_bundles_file, recipe_problems
from atp_bridge.rules.files import RuleFileError, WatchedFile
from atp_bridge.rules.safety import SafetyRules, build_rules, read_safety_file


_NO_CAP = float("inf")  # never the smaller one: min() keeps the value


class Caps:
    """``caps: {default, locations, products}``: the most a pair may promise.

    A pair's cap is the smaller of its product's and its location's caps where
    either is set, else ``default`` (None: no cap)."""

    __slots__ = ("default", "locations", "products")

    def __init__(self, default: int | None = None, locations=None, products=None):
        self.default = default
        self.locations = dict(locations or {})
        self.products = dict(products or {})

    def for_pair(self, product: str, location: str) -> int | None:
        p, loc = self.products.get(product), self.locations.get(location)
        if p is None and loc is None:
            return self.default
        return loc if p is None else p if loc is None else min(p, loc)

    def apply(self, atps: list, pids: Sequence[str], locations: Sequence[str]) -> None:
        """Cap every known value of the flat product-major grid in place."""
        n_l = len(locations)
        none = _NO_CAP if self.default is None else self.default
        by_loc = [self.locations.get(loc, none) for loc in locations]
        products, loc_caps = self.products, self.locations
        if None in atps:  # unknowns (omit_unknown) stay unknown: the slow way
            self._apply_slowly(atps, pids, locations, by_loc)
            return
        # the rows of products with a cap of their own (it replaces the default): kept aside
        own = [(i, cap_p, atps[i * n_l:(i + 1) * n_l]) for i, pid in enumerate(pids)
               if (cap_p := products.get(pid)) is not None] if products else ()
        top = max(atps, default=0)  # a cap at or above every value changes nothing
        for j, c in enumerate(by_loc):
            if c < top:  # one location's column: a strided slice, scanned in C
                col = atps[j::n_l]
                if max(col) > c:
                    atps[j::n_l] = [v if v <= c else c for v in col]
        for i, cap_p, row in own:
            atps[i * n_l:(i + 1) * n_l] = [v if v <= c else c for v, c in zip(
                row, [min(cap_p, loc_caps.get(loc, cap_p)) for loc in locations])]

    def _apply_slowly(self, atps: list, pids, locations, by_loc) -> None:
        n_l = len(locations)
        for i, pid in enumerate(pids):
            cap_p = self.products.get(pid)
            caps = by_loc if cap_p is None else [min(cap_p, self.locations.get(loc, cap_p))
                                                 for loc in locations]
            b = i * n_l
            for j, c in enumerate(caps):
                v = atps[b + j]
                if v is not None and v > c:
                    atps[b + j] = c


class Rules:
    """The live rules of one bridge: safety stock and bundles (each reloaded from
    its file when it changes), caps. Each is replaced as a whole on reload."""

    def __init__(self, config):
        """``config`` is the BridgeConfig; its ``rule_files`` hold what config
        loading read of the rule files (``{"safety": ..., "bundles": ...}``)."""
        ss, bc, files = config.safety_stock, config.bundles, config.rule_files or {}
        self.safety: SafetyRules = build_rules(ss, files.get("safety"))
        self._inline_bundles = dict(bc.recipes) if bc else {}
        recipes = {**self._inline_bundles, **(files.get("bundles") or {})}
        self.bundles: Bundles | None = Bundles(recipes) if recipes else None
        c = config.caps
        self.caps = Caps(c.default, c.locations, c.products) if c and c.any else None
        self.on_change = None  # set by the bridge: forget the plans (they cache safety stock)
        self.watchers: list[WatchedFile] = []
        if ss.file:
            self.watchers.append(WatchedFile(
                "safety_stock.file", ss.path, lambda path: build_rules(ss, read_safety_file(path)),
                self._new_safety, ss.reload_interval_s))
        if bc and bc.file:
            self.watchers.append(WatchedFile("bundles.file", bc.path, self._read_bundles,
                                             self._new_bundles, bc.reload_interval_s))

    @property
    def active(self) -> bool:
        """True when anything beyond a per-location safety stock is configured."""
        return bool(self.bundles or self.caps or self.safety.per_product or self.watchers)

    def for_location(self, location: str) -> float:
        """The location's safety stock (the planner caches it per location list)."""
        return self.safety.for_location(location)

    def _new_safety(self, rules: SafetyRules) -> None:
        self.safety = rules
        if self.on_change is not None:
            self.on_change()

    def _read_bundles(self, path: str) -> Bundles | None:
        """The bundles with ``path`` reloaded; a cycle is refused like a bad row."""
        merged = {**self._inline_bundles, **read_bundles_file(path)}
        problems = recipe_problems(merged)
        if problems:
            raise RuleFileError(f"{path}: " + "; ".join(f"{k}: {m}" for k, m in problems[:20]))
        return Bundles(merged) if merged else None

    def _new_bundles(self, bundles: Bundles | None) -> None:
        self.bundles = bundles

    def start(self) -> None:
        for w in self.watchers:
            w.start()

    def close(self) -> None:
        for w in self.watchers:
            w.close()


__all__ = ["Rules", "Caps", "SafetyRules", "Bundles"]
