"""Bundles and kits: a bundle's ATP is what its components make together.

At a location, a bundle's ATP is ``min over components of floor(component ATP
/ quantity)``, each component's ATP after its own safety stock and holds
(its cap does not apply: a cap limits what is promised of that product, not
what is in stock); then the bundle's own safety stock, cap and holds apply.
A component may be a bundle itself (expanded, after its own safety stock).

The bundle is not asked of any adapter: its leaf components are, in the same
ONE batch per adapter as the request's other products (a component NewStore
asked about too is asked once). A component no adapter knows makes the
bundle 0, or unknown with ``omit_unknown``. Ids are NewStore's ``product_id``;
a component's id is given to the adapters as both its ``product_id`` and its
``external_identifier``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from atp_bridge.rules.files import number, raise_bad_rows, read_rows

COLUMNS = ("bundle", "component", "quantity")
Recipes = Mapping[str, Mapping[str, int]]


def read_bundles_file(path: str) -> dict[str, dict[str, int]]:
    """``{bundle: {component: quantity}}`` from a ``bundle,component,quantity`` CSV."""
    recipes: dict[str, dict[str, int]] = {}
    bad = []
    for line, (bundle, component, quantity) in read_rows(path, COLUMNS):
        if not bundle or not component:
            bad.append(f"line {line}: bundle and component must not be empty")
            continue
        try:
            q = number(quantity, integer=True, positive=True)
        except ValueError as e:
            bad.append(f"line {line}: quantity {quantity!r}: {e}")
            continue
        recipes.setdefault(bundle, {})[component] = q
    raise_bad_rows(path, bad)
    return recipes


def recipe_problems(recipes: Recipes) -> list[tuple[str, str]]:
    """``(key, message)`` for each bundle that lists itself or is part of a cycle."""
    problems = []
    for bundle, parts in recipes.items():
        if bundle in parts:
            problems.append((f"{bundle}.{bundle}", "a bundle cannot list itself as a component"))
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for part in recipes.get(node, ()):
            if part == node or part not in recipes:
                continue
            if state.get(part) == 1:  # told from its smallest id, whatever the order of the keys
                ring = path[path.index(part):]
                start = ring.index(min(ring))
                cycle = ring[start:] + ring[:start] + [ring[start]]
                problems.append((cycle[0], f"bundles form a cycle: {' -> '.join(cycle)}"))
            elif part not in state:
                visit(part, path + [part])
        state[node] = 2

    for bundle in sorted(recipes):
        if bundle not in state:
            visit(bundle, [bundle])
    return problems


class Bundles:
    """Checked recipes (see :func:`recipe_problems`) and what each one needs asked."""

    def __init__(self, recipes: Recipes):
        self.recipes = {b: dict(parts) for b, parts in recipes.items()}
        self.ids = frozenset(self.recipes)
        self.leaves: dict[str, tuple[str, ...]] = {}
        # per bundle: the bundles to compute for it, inner ones first, each with its
        # (component, quantity) pairs: the request path walks this, no recursion
        self.order: dict[str, tuple[tuple[str, tuple[tuple[str, int], ...]], ...]] = {}
        for b in self.recipes:
            self._leaves(b)
            self.order[b] = tuple((x, tuple(self.recipes[x].items())) for x in self._inner_first(b, {}))

    def _inner_first(self, bundle: str, seen: dict) -> dict:
        for part in self.recipes[bundle]:
            if part in self.recipes and part not in seen:
                self._inner_first(part, seen)
        seen[bundle] = None
        return seen

    def _leaves(self, bundle: str) -> tuple[str, ...]:
        """The non-bundle products ``bundle`` is made of, at any depth, in recipe order."""
        got = self.leaves.get(bundle)
        if got is None:
            out: dict[str, None] = {}
            for part in self.recipes[bundle]:
                out.update(dict.fromkeys(self._leaves(part) if part in self.recipes else (part,)))
            got = self.leaves[bundle] = tuple(out)
        return got

    def expand(self, pids: Sequence[str], eids: Sequence[str]) -> "Expansion | None":
        """What to ask the adapters for a request naming ``pids``; None when it has no bundle."""
        if self.ids.isdisjoint(pids):
            return None
        return Expansion(self, pids, eids)

    def __len__(self) -> int:
        return len(self.recipes)


class Expansion:
    """One request's products as asked of the adapters: its own non-bundle
    products, in order, then the bundles' leaf components it lacks."""

    def __init__(self, bundles: Bundles, pids: Sequence[str], eids: Sequence[str]):
        self.bundles = bundles
        self.requested = pids
        ids = bundles.ids
        asked_p: list[str] = []
        asked_e: list[str] = []
        rows: list[int | None] = []  # requested product -> its row among the asked, None: a bundle
        index: dict[str, int] = {}
        wanted: dict[str, None] = {}  # the requested bundles, once each, in order
        for pid, eid in zip(pids, eids):
            if pid in ids:
                rows.append(None)
                wanted[pid] = None
                continue
            n = len(asked_p)
            index.setdefault(pid, n)
            rows.append(n)
            asked_p.append(pid)
            asked_e.append(eid)
        leaves = bundles.leaves
        for pid in wanted:
            for leaf in leaves[pid]:
                if leaf not in index:
                    index[leaf] = len(asked_p)
                    asked_p.append(leaf)
                    asked_e.append(leaf)
        self.pids, self.eids, self.rows, self.index, self.wanted = asked_p, asked_e, rows, index, wanted

    def compute(self, atps: list, locations: Sequence[str], safety, by_location=None, held=None,
                explain: dict | None = None) -> list:
        """The requested grid from the asked grid ``atps`` (after safety stock, holds
        and failures), each bundle computed; ``held(pid, loc)`` tells a held pair.
        ``safety`` is the SafetyRules, ``by_location`` the plan's per-location tuple.
        ``explain`` (``atp-bridge query``) gets, per requested bundle and location,
        its components' ATP and the one that limits it."""
        n_l = len(locations)
        if explain is None and None not in atps:  # every value known (`in` scans in C)
            return self._compute_known(atps, locations, safety, by_location, held)
        recipes, memo = self.bundles.recipes, {}

        def row(pid: str) -> Sequence:
            if pid not in recipes:
                i = self.index[pid]
                return atps[i * n_l:(i + 1) * n_l]
            got = memo.get(pid)
            if got is None:
                got = memo[pid] = self._bundle(pid, recipes[pid], row, locations, safety, by_location,
                                               held, explain)
            return got

        out: list = []
        for pid, r in zip(self.requested, self.rows):
            out.extend(row(pid) if r is None else atps[r * n_l:(r + 1) * n_l])
        return out

    def _compute_known(self, atps: list, locations, safety, by_location, held) -> list:
        """:meth:`compute` when every value is known, without the explanation: the
        bundles in their precomputed order, each location's minimum in C."""
        n_l, index, order = len(locations), self.index, self.bundles.order
        values: dict[str, list] = {}
        for wanted in self.wanted:
            for bundle, parts in order[wanted]:
                if bundle in values:
                    continue
                cols = []
                for part, q in parts:
                    col = values.get(part)
                    if col is None:
                        i = index[part] * n_l
                        col = atps[i:i + n_l]
                    cols.append(col if q == 1 else [v // q for v in col])
                values[bundle] = _own_rules(list(map(min, *cols)) if len(cols) > 1 else cols[0],
                                            bundle, locations, safety, by_location, held)
        out: list = []
        for pid, r in zip(self.requested, self.rows):
            out += values[pid] if r is None else atps[r * n_l:(r + 1) * n_l]
        return out

    @staticmethod
    def _bundle(bundle, parts, row, locations, safety, by_location, held, explain) -> list:
        rows = [(part, q, row(part)) for part, q in parts.items()]
        out, why = [], []
        floor = math.floor
        for j, loc in enumerate(locations):
            value, limit = None, None
            unknown = False
            for part, q, r in rows:
                v = r[j]
                if v is None:
                    unknown, limit = True, part
                    break
                makes = int(v // q)
                if value is None or makes < value:
                    value, limit = makes, part
            s = safety.for_pair(bundle, loc)
            if unknown:
                value = None
            elif held is not None and held(bundle, loc):
                value = 0
            elif s:
                value = floor(value - s) if value > s else 0
            out.append(value)
            if explain is not None:
                why.append({"location": loc, "atp": value, "limited_by": limit, "safety_stock": s,
                            "components": {p: {"quantity": q, "atp": r[j]} for p, q, r in rows}})
        if explain is not None:
            explain.setdefault(bundle, why)
        return out


def _own_rules(out: list, bundle: str, locations, safety, by_location, held) -> list:
    """A bundle's own safety stock and holds over its computed (known, whole) values."""
    if bundle in safety.per_product:
        ss = [safety.for_pair(bundle, loc) for loc in locations]
    else:  # the bundle has no rule of its own: the location's (or the default)
        ss = by_location or ()
    if any(ss):
        if safety.whole:  # ints: nothing to floor
            out = [v - s if v > s else 0 for v, s in zip(out, ss)]
        else:
            floor = math.floor
            out = [floor(v - s) if v > s else 0 for v, s in zip(out, ss)]
    if held is not None:
        out = [0 if held(bundle, loc) else v for v, loc in zip(out, locations)]
    return out
