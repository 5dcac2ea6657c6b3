"""Id maps: NewStore's product and location ids -> the source's own, for every adapter.

``location_map`` / ``product_map`` (inline, ``{NewStore id: source id}``) and
``location_map_file`` / ``product_map_file`` (a CSV file: a header row, then
``newstore_id,source_id`` per row; relative to the config directory; inline
entries win over the file's). A location may map to a composite id such as
``"1710/0001"`` (plant/storage location) that the adapter's templates split.
An unmapped id is sent as it is.

The map is applied to the batch before the adapter sees it, and an adapter
answers by position (its values follow ``batch.pairs()``), so answers come back
under NewStore's ids without a reverse map, even when two NewStore ids map to
one source id.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping

from atp_bridge.adapters.base import Batch

__all__ = ["IdMaps", "MAP_KEYS", "read_map_file"]

MAP_KEYS = ("location_map", "product_map", "location_map_file", "product_map_file")


def read_map_file(path: str) -> dict[str, str]:
    """``{newstore_id: source_id}`` from a two-column CSV with a header row;
    raises ValueError naming the line of a bad row, OSError for the file."""
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        next(rows, None)  # the header
        for line, row in enumerate(rows, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2 or not row[0] or not row[1]:
                raise ValueError(f"line {line}: expected two non-empty columns newstore_id,source_id")
            out[row[0]] = row[1]
    return out


class IdMaps:
    """The two maps of one adapter; :meth:`apply` translates a batch."""

    __slots__ = ("products", "locations")

    def __init__(self, products: Mapping[str, str] | None = None, locations: Mapping[str, str] | None = None):
        self.products = dict(products or {})
        self.locations = dict(locations or {})

    def __bool__(self) -> bool:
        return bool(self.products or self.locations)

    def apply(self, batch: Batch) -> Batch:
        """``batch`` with the source's ids (same order, same length)."""
        p, loc = self.products, self.locations
        products = [p.get(x, x) for x in batch.products] if p else batch.products
        locations = [loc.get(x, x) for x in batch.locations] if loc else batch.locations
        return Batch(products, locations, batch.deadline)
