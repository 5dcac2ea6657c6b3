"""The CSV adapter's parsing: the csv-module path.

:func:`parse_rows` is the reference parser: every quirk of the format
(quotes, a BOM, blank lines, spaces after a delimiter, any encoding) and
every error message with its line numbers comes from here. The adapter
serves a shared, mapped copy of the table (:mod:`adapters.csv_shared`),
built by :mod:`adapters.csv_build` with the fast parser of
:mod:`adapters.csv_fast` when the file is plain, and with this one when it is
not (or is broken, for the error message). The tests keep the same table in
memory (``tests/adapters/csv_reference.py``) as the reference the mapped table
is checked against.
"""
from __future__ import annotations

import csv
import math
import os
from array import array
from collections.abc import Iterable, Mapping
from operator import itemgetter

DEFAULT_COLUMNS = {"product": "product", "location": "location", "atp": "atp"}
MAX_REPORTED = 20  # bad rows quoted in an error message; the rest are only counted
CHANGED = "changed"  # read_file(): the file changed while it was being read
_NAN = math.nan


class _FormatError(ValueError):
    """The file's content is unusable; the message says where and why."""


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
