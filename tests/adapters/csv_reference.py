"""The in-memory CSV table: the reference the shared, mapped table is tested against.

Built from the same rows as the mapped table
(:func:`~atp_bridge.adapters.csv_table.parse_rows`), it must give the same
answers for every file, layout and value kind.
"""
from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence

from atp_bridge.adapters.base import WholeNumbers
from atp_bridge.adapters.csv_table import DEFAULT_COLUMNS, parse_rows


class CsvTable:
    """The answers a CSV file gives, as plainly as they can be computed: a dict of
    ``(product, location) -> value`` in file order (the last duplicate wins), so it shares
    no code with the mapped table it checks.

    ``whole`` when every value is a whole number >= 0 (answers are then ints in a
    :class:`~adapters.base.WholeNumbers`, else floats); ``layout`` is the one the mapped
    table picks for these rows (``dense`` when they fill at least a quarter of P x L),
    or the one asked for: answers do not depend on it.
    """

    __slots__ = ("rows", "products", "locations", "layout", "whole", "_cells")

    def __init__(self, products: dict, locations: dict, pidx: array, lidx: array, vals: array,
                 layout: str | None = None):
        pnames, lnames = list(products), list(locations)
        self.rows, self.products, self.locations = len(vals), len(pnames), len(lnames)
        self.layout = layout or ("dense" if 4 * len(vals) >= len(pnames) * len(lnames) else "sparse")
        self.whole = all(v >= 0 and v < 2.0 ** 63 and float(v).is_integer() for v in vals)
        self._cells = {(pnames[i], lnames[j]): int(v) if self.whole else v
                       for i, j, v in zip(pidx, lidx, vals)}

    def lookup(self, products: Sequence[str], locations: Sequence[str]) -> list:
        """ATP of every (product, location), product-major; None where unknown."""
        out = WholeNumbers() if self.whole else []
        out.extend(self._cells.get((p, loc)) for p in products for loc in locations)
        return out


def load_table(lines: Iterable[str], *, delimiter: str = ",",
               columns: Mapping[str, str] = DEFAULT_COLUMNS, layout: str | None = None) -> CsvTable:
    """Parse CSV text (an open file or any iterable of lines) into a :class:`CsvTable`;
    the rules and errors are those of :func:`parse_rows`."""
    return CsvTable(*parse_rows(lines, delimiter=delimiter, columns=columns), layout)
