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
CACHE_LIMIT = 100_000  # names a worker remembers per table (~100 bytes each)


class TableFileError(ValueError):
    """The file is not a complete table of this format (a leftover, another version)."""


def _align(n: int) -> int:
    return (n + 7) & ~7


def write_table(path: str, meta: dict, pnames: list, lnames: list, pidx, lidx, vals,
                layout: str | None = None) -> dict:
    """Write the table of rows ``(pidx[r], lidx[r], vals[r])`` (numpy arrays, file order)
    to ``path``; returns the header written. The last of duplicate rows wins.

    Same choices and answers as :class:`~adapters.csv_table.CsvTable`: ``dense``
    when ``4 * rows >= P * L`` (else ``sparse``), whole numbers >= 0 kept as
    int64 with -1 for unknown, else float64 with NaN.
    """
    import numpy as np

    rows, n_p, n_l = len(vals), len(pnames), len(lnames)
    layout = layout or ("dense" if 4 * rows >= n_p * n_l else "sparse")
    whole = bool(rows == 0 or (vals.min() >= 0 and vals.max() < 2.0 ** 63
                               and np.array_equal(vals, np.floor(vals))))
    vtype, vcode = (np.int64, "q") if whole else (np.float64, "d")
    pblob, poffs, pslots = _names(pnames, np)
    lblob, loffs, lslots = _names(lnames, np)
    sections = {"pnames": (pblob, "B"), "poffs": (poffs, "q"), "pslots": (pslots, "I"),
                "lnames": (lblob, "B"), "loffs": (loffs, "q"), "lslots": (lslots, "I")}
    if layout == "dense":
        stride = n_l + 1
        flat = pidx.astype(np.int64) * stride + lidx
        grid = np.full(n_p * stride, -1 if whole else np.nan, vtype)
        grid[flat] = vals
        filled = int((grid >= 0).sum() if whole else (~np.isnan(grid)).sum())
        if filled != rows:  # duplicates: numpy does not promise which of them it kept
            order = np.argsort(flat, kind="stable")
            last = _last_of_runs(flat[order], np)
            grid[flat[order][last]] = vals[order][last]
        sections["grid"] = (grid, vcode)
    else:
        key = pidx.astype(np.int64) * max(n_l, 1) + lidx
        order = np.argsort(key, kind="stable")  # by product, then location; file order kept
        skey = key[order]
        last = _last_of_runs(skey, np)
        skey = skey[last]
        starts = np.zeros(n_p + 1, np.int64)
        np.cumsum(np.bincount(skey // max(n_l, 1), minlength=n_p), out=starts[1:])
        sections.update(starts=(starts, "q"), locs=((skey % max(n_l, 1)).astype(np.uint32), "I"),
                        vals=(vals[order][last].astype(vtype), vcode))
    header = {**meta, "version": VERSION, "rows": rows, "products": n_p, "locations": n_l,
              "layout": layout, "whole": whole, "sections": {}}
    # offsets depend on the header's length; a fixed-width header avoids the loop
    reserve = _align(len(json.dumps(header)) + 64 * len(sections) + 256)
    offset = 16 + reserve
    for name, (arr, code) in sections.items():
        header["sections"][name] = [offset, int(arr.nbytes), code]
        offset = _align(offset + arr.nbytes)
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(MAGIC + len(raw).to_bytes(8, "little") + raw.ljust(reserve, b" "))
        for name, (arr, _) in sections.items():
            f.seek(header["sections"][name][0])
            f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
        f.truncate(max(offset, f.tell()))
        f.flush()
        os.fsync(f.fileno())  # a disk volume: the rename must not outrun the data
    return header


def _last_of_runs(sorted_keys, np):
    return np.append(sorted_keys[1:] != sorted_keys[:-1], True) if len(sorted_keys) else \
        np.zeros(0, bool)


def _names(names: list, np):
    """UTF-8 blob, int64 offsets, and uint32 slots (index + 1, 0 = empty; linear probing)."""
    encoded = list(map(str.encode, names))
    offs = np.zeros(len(names) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(names)), out=offs[1:])
    size = 8
    while size < 2 * len(names):
        size *= 2
    slots = np.zeros(size, np.uint32)
    pos = np.fromiter(map(crc32, encoded), np.int64, len(names)) & (size - 1)
    todo = np.arange(len(names), dtype=np.int64)
    while len(todo):  # place a batch per round: one winner per free slot, the rest move on
        free = slots[pos] == 0
        cand = np.flatnonzero(free)
        taken, first = np.unique(pos[cand], return_index=True)
        slots[taken] = todo[cand[first]] + 1
        placed = np.zeros(len(todo), bool)
        placed[cand[first]] = True
        todo, pos = todo[~placed], (pos[~placed] + 1) & (size - 1)
    return np.frombuffer(b"".join(encoded), np.uint8), offs, slots


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
    """A table file mapped read-only; answers like :class:`~adapters.csv_table.CsvTable`.

    The mapping is released when the last reference goes (a request still
    looking up in it keeps it alive), so a reload never pulls pages from
    under a request. ``header`` is the file's JSON header.
    """

    __slots__ = ("rows", "products", "locations", "layout", "whole", "path", "header",
                 "_map", "_p", "_l", "_grid", "_starts", "_locs", "_vals", "__weakref__")

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
