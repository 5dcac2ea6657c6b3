"""The CSV adapter's table as one file that every worker maps read-only.

A table file holds everything a lookup needs: the product and location names
(UTF-8, back to back, with their offsets and an open-addressing hash table of
``crc32`` slots), and the values (a dense ``P x (L+1)`` grid, or per product a
run of sorted location indices with aligned values), as flat little arrays at
8-byte aligned offsets behind a JSON header. :class:`MappedTable` maps it with
``mmap`` and reads it through ``memoryview`` casts: the pages are the kernel's
page cache, shared by every process that maps the file, so four workers cost
one copy, and a worker that starts (or restarts) is ready as soon as the file
is mapped. Nothing is unpickled or copied into the worker.

A worker keeps only a small cache of the names it was asked for
(``CACHE_LIMIT`` per table), so an id costs a ``dict`` lookup after its first
request; the first one probes the shared hash table.
"""
from __future__ import annotations

import json
import mmap
import os
from bisect import bisect_left
from collections.abc import Sequence
from math import isnan
from operator import itemgetter
from zlib import crc32

from atp_bridge.adapters.base import WholeNumbers

MAGIC = b"ATPTABLE"
VERSION = 1
CACHE_LIMIT = 100_000  # names a worker remembers per table (~136 bytes each: 13 MB when full)


class TableFileError(ValueError):
    """The file is not a complete table of this format (a leftover, another version)."""


def read_header(path: str) -> dict:
    """The JSON header of a table file; :class:`TableFileError` if it is not one."""
    with open(path, "rb") as f:
        return _header(f.read(16), f, os.fstat(f.fileno()).st_size)


def _header(head: bytes, f, size: int) -> dict:
    if len(head) != 16 or head[:8] != MAGIC:
        raise TableFileError("not a table file")
    n = int.from_bytes(head[8:], "little")
    try:
        header = json.loads(f.read(n)) if n < size else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("version") != VERSION:
        raise TableFileError("unknown table version")
    for off, length, _ in header["sections"].values():
        if off + length > size:
            raise TableFileError("truncated")
    return header


class _Names:
    """Name -> index over a mapped names section, with a small per-process cache."""

    __slots__ = ("count", "cache", "_blob", "_offs", "_slots", "_mask")

    def __init__(self, blob, offs, slots):
        self.count = len(offs) - 1
        self._blob, self._offs, self._slots, self._mask = blob, offs, slots, len(slots) - 1
        self.cache: dict[str, int] = {}

    def find(self, name: str) -> int | None:
        """Index of ``name``, or None; remembers found names (up to ``CACHE_LIMIT``)."""
        try:
            b = name.encode()
        except UnicodeEncodeError:  # a lone surrogate from JSON: never in a file
            return None
        blob, offs, slots, mask = self._blob, self._offs, self._slots, self._mask
        h = crc32(b) & mask
        while k := slots[h]:
            k -= 1
            if blob[offs[k]:offs[k + 1]] == b:
                if len(self.cache) < CACHE_LIMIT:
                    self.cache[name] = k
                return k
            h = (h + 1) & mask
        return None


class MappedTable:
    """A table file mapped read-only (the tests check it against an in-memory reference).

    The mapping is released when the last reference goes (a request still
    looking up in it keeps it alive), so a reload never pulls pages from
    under a request. ``header`` is the file's JSON header.
    """

    __slots__ = ("rows", "products", "locations", "layout", "whole", "path", "header",
                 "_map", "_views", "_p", "_l", "_grid", "_starts", "_locs", "_vals", "__weakref__")

    def __init__(self, path: str):
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.header = header = _header(f.read(16), f, size)
            self._map = mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)
        sec = {name: view[off:off + length].cast(code) for name, (off, length, code)
               in header["sections"].items()}
        self.path, self.rows, self.layout = path, header["rows"], header["layout"]
        self.products, self.locations, self.whole = header["products"], header["locations"], header["whole"]
        self._p = _Names(sec["pnames"], sec["poffs"], sec["pslots"])
        self._l = _Names(sec["lnames"], sec["loffs"], sec["lslots"])
        self._grid, self._starts = sec.get("grid"), sec.get("starts")
        self._locs, self._vals = sec.get("locs"), sec.get("vals")
        self._views = [*sec.values(), view]

    def close(self) -> None:
        """Unmap the file now (the GIL is let go meanwhile: :meth:`close` a big table
        off the gevent hub). Only for a table no request holds: a lookup afterwards
        raises ``ValueError``. Without it the mapping goes with the last reference."""
        for v in self._views:  # every view of the map, or it cannot be closed
            v.release()
        self._views = []
        self._map.close()

    def lookup(self, products: Sequence[str], locations: Sequence[str]) -> list:
        """ATP of every (product, location), product-major; None where unknown."""
        width = self.locations
        lcache, lfind = self._l.cache, self._l.find
        lids = []
        for loc in locations:  # width = "unknown location"
            j = lcache.get(loc)
            if j is None and (j := lfind(loc)) is None:
                j = width
            lids.append(j)
        nones = [None] * len(lids)
        pget, pfind = self._p.cache.get, self._p.find
        whole = self.whole
        out: list = WholeNumbers() if whole else []
        if not lids:
            return out
        extend = out.extend
        if self._grid is not None:
            grid, stride = self._grid, width + 1
            pick = itemgetter(*lids) if len(lids) > 1 else (lambda row, j=lids[0]: (row[j],))
            for p in products:
                i = pget(p)
                if i is None and (i := pfind(p)) is None:
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
                if i is None and (i := pfind(p)) is None:
                    extend(nones)
                    continue
                lo, hi = starts[i], starts[i + 1]
                if hi - lo <= short:  # a small dict beats one bisect per pair
                    extend(map(dict(zip(locs[lo:hi], vals[lo:hi])).get, lids))
                else:
                    extend([vals[k] if (k := bisect_left(locs, j, lo, hi)) < hi and locs[k] == j
                            else None for j in lids])
        return out
