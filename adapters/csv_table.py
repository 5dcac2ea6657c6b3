"""The CSV adapter's parsing: the csv-module path and the in-memory :class:`CsvTable`.

:func:`parse_rows` is the reference parser: every quirk of the format
(quotes, a BOM, blank lines, spaces after a delimiter, any encoding) and
every error message with its line numbers comes from here. The adapter
serves a shared, mapped copy of the table (:mod:`adapters.csv_shared`),
built by :mod:`adapters.csv_build` with the fast parser of
:mod:`adapters.csv_fast` when the file is plain, and with this one when it is
not (or is broken, for the error message). :class:`CsvTable` is the same
table in memory, built from the same rows: the reference the mapped table
is tested against.
"""
from __future__ import annotations

import csv
import math
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from math import isnan
from operator import itemgetter

from atp_bridge.adapters.base import WholeNumbers

DEFAULT_COLUMNS = {"product": "product", "location": "location", "atp": "atp"}
MAX_REPORTED = 20  # bad rows quoted in an error message; the rest are only counted
CHANGED = "changed"  # read_file(): the file changed while it was being read
_NAN = math.nan


class _FormatError(ValueError):
    """The file's content is unusable; the message says where and why."""


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


def parse_rows(lines: Iterable[str], *, delimiter: str = ",",
               columns: Mapping[str, str] = DEFAULT_COLUMNS) -> tuple:
    """Parse CSV text into ``(products, locations, pidx, lidx, vals)``: name -> index
    dicts (numbered in order of first appearance) and one array entry per row.

    A header row naming the ``columns`` is required; other columns are ignored.
    ``atp`` may be an int or a float and is kept as a float. Blank lines are
    skipped and spaces after a delimiter dropped. When a (product, location)
    pair appears twice, the last row wins. Any bad row rejects the whole file:
    raises ``ValueError`` listing the first ``MAX_REPORTED`` bad lines and the count.
    """
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True, strict=True)
    try:
        header = [h.strip() for h in next(reader, ())]
        wanted = [columns["product"], columns["location"], columns["atp"]]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise _FormatError(f"missing column {', '.join(map(repr, missing))} (header found: "
                               f"{', '.join(map(repr, header)) or 'none, the file is empty'})")
        width = len(header)
        pick = itemgetter(*(header.index(c) for c in wanted))
        products: dict[str, int] = {}
        locations: dict[str, int] = {}
        pget, lget = products.get, locations.get
        pidx, lidx, vals = array("I"), array("I"), array("d")
        padd, ladd, vadd = pidx.append, lidx.append, vals.append
        bad: list[str] = []
        nbad = 0
        for row in reader:
            if len(row) == width:
                p, loc, raw = pick(row)
                try:
                    v = float(raw)
                except ValueError:
                    v = _NAN
                if p and loc and v - v == 0.0:  # false for NaN and +-inf
                    i = pget(p)
                    if i is None:
                        i = products[p] = len(products)
                    j = lget(loc)
                    if j is None:
                        j = locations[loc] = len(locations)
                    padd(i)
                    ladd(j)
                    vadd(v)
                    continue
            elif not row:
                continue
            nbad += 1
            if nbad <= MAX_REPORTED:
                bad.append(f"line {reader.line_num}: {_problem(row, width, pick)}")
    except csv.Error as e:  # malformed quoting etc.: the rest of the file cannot be trusted
        raise _FormatError(f"line {reader.line_num}: {e}") from e
    if nbad:
        more = f" ({nbad} bad rows, first {MAX_REPORTED} shown)" if nbad > MAX_REPORTED else (
            f" ({nbad} bad rows)" if nbad > 1 else "")
        raise _FormatError("; ".join(bad) + more)
    return products, locations, pidx, lidx, vals


def _problem(row: list[str], width: int, pick) -> str:
    if len(row) != width:
        return f"expected {width} fields, got {len(row)}"
    p, loc, raw = pick(row)
    if not p:
        return "empty product"
    if not loc:
        return "empty location"
    return f"atp {raw!r} is not a finite number"


def _signature(st: os.stat_result) -> tuple:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def _path_signature(path: str) -> tuple | None:
    try:
        return _signature(os.stat(path))
    except OSError:
        return None
