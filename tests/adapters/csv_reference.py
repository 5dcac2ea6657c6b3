"""The in-memory CSV table: the reference the shared, mapped table is tested against.

It was the CSV adapter's table until the adapter served a mapped file
(:mod:`atp_bridge.adapters.csv_shared`); built from the same rows
(:func:`~atp_bridge.adapters.csv_table.parse_rows`), it must give the same
answers for every file, layout and value kind.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from math import isnan
from operator import itemgetter

from atp_bridge.adapters.base import WholeNumbers
from atp_bridge.adapters.csv_table import DEFAULT_COLUMNS, parse_rows

_NAN = math.nan


class CsvTable:
    """An immutable ATP table answering products x locations in one call.

    Two layouts with identical answers, picked by fill ratio: ``dense`` (a
    P x (L+1) grid; the extra column is where unknown locations point, so the
    hot loop has no branch for them) when the file has at least P*L/4 rows,
    else ``sparse`` (per product a run of sorted location indices with aligned
    values, searched with ``bisect``).

    When every ATP in the file is a whole number >= 0 (``whole``, the usual
    case) values are kept as 8-byte ints, -1 marking an unknown pair in the
    dense grid, and :meth:`lookup` answers a
    :class:`~adapters.base.WholeNumbers`, which the bridge need not floor or
    clamp. Otherwise they are floats, NaN marking an unknown pair.
    """

    __slots__ = ("rows", "products", "locations", "layout", "whole",
                 "_products", "_locations", "_grid", "_starts", "_locs", "_vals")

    def __init__(self, products: dict, locations: dict, pidx: array, lidx: array, vals: array,
                 layout: str | None = None):
        self._products, self._locations, self.rows = products, locations, len(vals)
        self.products = n_p = len(products)  # counts; the dicts stay private
        self.locations = n_l = len(locations)
        self.layout = layout or ("dense" if 4 * len(vals) >= n_p * n_l else "sparse")
        # min(), max() and the is_integer() map run in C: ~0.1 s for a million rows
        self.whole = not vals or (min(vals) >= 0 and max(vals) < 2.0 ** 63
                                  and all(map(float.is_integer, vals)))
        if self.whole:
            vals = array("q", map(int, vals))
        self._grid = self._starts = self._locs = self._vals = None
        if self.layout == "dense":
            stride = n_l + 1
            grid = array(vals.typecode, [-1 if self.whole else _NAN]) * (n_p * stride)
            for i, j, v in zip(pidx, lidx, vals):  # file order: the last duplicate wins
                grid[i * stride + j] = v
            self._grid = grid
            return
        # Stable counting sort of row numbers by product, then each product's run
        # by location; among duplicates the later row comes last and wins.
        starts = array("q", bytes(8 * (n_p + 1)))
        for i in pidx:
            starts[i + 1] += 1
        for i in range(n_p):
            starts[i + 1] += starts[i]
        slot = array("q", starts)
        order = array("q", bytes(8 * len(vals)))
        for r, i in enumerate(pidx):
            order[slot[i]] = r
            slot[i] += 1
        out_starts, out_locs, out_vals = array("q", [0]), array("I"), array(vals.typecode)
        for i in range(n_p):
            run = order[starts[i]:starts[i + 1]]
            prev = -1
            for r in (sorted(run, key=lidx.__getitem__) if len(run) > 1 else run):
                j = lidx[r]
                if j == prev:
                    out_vals[-1] = vals[r]
                else:
                    out_locs.append(j)
                    out_vals.append(vals[r])
                    prev = j
            out_starts.append(len(out_locs))
        self._starts, self._locs, self._vals = out_starts, out_locs, out_vals

    def lookup(self, products: Sequence[str], locations: Sequence[str]) -> list:
        """ATP of every (product, location), product-major; None where unknown."""
        width = len(self._locations)
        lget = self._locations.get
        lids = [lget(loc, width) for loc in locations]  # width = "unknown location"
        nones = [None] * len(lids)
        pget = self._products.get
        whole = self.whole
        out: list = WholeNumbers() if whole else []
        if not lids:
            return out
        extend = out.extend
        if self._grid is not None:
            grid, stride = self._grid, width + 1
            # one C call picks a product's values; a C scan tells whether any is unknown
            pick = itemgetter(*lids) if len(lids) > 1 else (lambda row, j=lids[0]: (row[j],))
            for p in products:
                i = pget(p)
                if i is None:
                    extend(nones)
                    continue
                vals = pick(grid[i * stride:(i + 1) * stride])
                if whole:
                    extend([v if v >= 0 else None for v in vals] if -1 in vals else vals)
                else:
                    extend([v if v == v else None for v in vals] if any(map(isnan, vals)) else vals)
        else:
            starts, locs, vals = self._starts, self._locs, self._vals
            short = 4 * len(lids)
            for p in products:
                i = pget(p)
                if i is None:
                    extend(nones)
                    continue
                lo, hi = starts[i], starts[i + 1]
                if hi - lo <= short:  # a small dict beats one bisect per pair
                    extend(map(dict(zip(locs[lo:hi], vals[lo:hi])).get, lids))
                else:
                    extend([vals[k] if (k := bisect_left(locs, j, lo, hi)) < hi and locs[k] == j
                            else None for j in lids])
        return out


def load_table(lines: Iterable[str], *, delimiter: str = ",",
               columns: Mapping[str, str] = DEFAULT_COLUMNS, layout: str | None = None) -> CsvTable:
    """Parse CSV text (an open file or any iterable of lines) into a :class:`CsvTable`;
    the rules and errors are those of :func:`parse_rows`."""
    return CsvTable(*parse_rows(lines, delimiter=delimiter, columns=columns), layout)
