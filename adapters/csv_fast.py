"""A fast path for parsing big, plain CSV files into columns, in parallel.

:func:`~adapters.csv_table.load_table` reads row by row through :mod:`csv`
(about 2 s per million rows with the table build); a 50-million-row file
would take minutes. Most ATP exports are plain: no quotes, one delimiter,
UTF-8. For those this module cuts the file into line-aligned byte ranges,
one process per core, and parses each in blocks of whole lines with numpy on
the raw bytes (:mod:`adapters.csv_bytes`: fields found by byte comparisons,
ids encoded as 64-bit keys and numbered per distinct id, whole numbers
converted in numpy, other values by ``float`` like the slow path).
:func:`scan` is a first pass that keeps no rows; a second pass either
collects the columns (:meth:`Scan.columns`) or writes a dense grid in place
(:meth:`Scan.fill_grid`). Both passes together: ~0.2 us of CPU per row.

It never decides that a file is bad: anything it does not handle exactly as
the :mod:`csv` path would (quotes, a space after a delimiter, a lone ``\\r``, a
bad row, a NUL, a non-UTF-8 encoding...) makes it raise :class:`Declined`,
and the caller parses the file the slow way, which gives the same answers
and the error messages with line numbers. So both paths accept the same
files and give the same values.
"""
from __future__ import annotations

import codecs
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from atp_bridge.adapters.csv_bytes import FIELD_LIMIT, Declined, Numbering, padded, parse_block

__all__ = ["Declined", "parse_columns"]

BLOCK = 2 << 20  # bytes parsed at once: ~100k rows, numpy loops long enough, ~20 MB of temporaries
FAST_ENCODINGS = {"utf-8", "utf-8-sig", "ascii"}
MIN_PART = 8 << 20  # a file smaller than this is not worth a second process


def parse_columns(path: str, encoding: str, delimiter: str, columns, processes: int | None = None):
    """``(product names, location names, pidx, lidx, vals)`` of ``path``, or raise :class:`Declined`.

    Names are in order of first appearance (as the slow path numbers them);
    ``pidx``/``lidx`` are numpy ``uint32`` arrays and ``vals`` ``float64``, one
    entry per data row in file order.
    """
    return scan(path, encoding, delimiter, columns, processes).columns()


def scan(path: str, encoding: str, delimiter: str, columns, processes: int | None = None) -> "Scan":
    """The first pass over ``path``: its names, row count and kind of values, or raise
    :class:`Declined`. Keeps no rows: the second pass (:meth:`Scan.columns` or
    :meth:`Scan.fill_grid`) parses the file again."""
    if (codecs.lookup(encoding).name not in FAST_ENCODINGS or delimiter.isspace()
            or not delimiter.isascii() or delimiter == "\0"):
        raise Declined("encoding or delimiter")
    with open(path, "rb") as f:
        first = f.readline(FIELD_LIMIT)
        data_start = f.tell()
        size = os.fstat(f.fileno()).st_size
        try:
            header_line = first.decode(encoding).rstrip("\r\n")
        except UnicodeDecodeError:
            raise Declined("header") from None
        if '"' in header_line or "\r" in header_line or not first.endswith(b"\n"):
            raise Declined("header")
        header = [h.strip() for h in header_line.split(delimiter)]
        wanted = [columns["product"], columns["location"], columns["atp"]]
        if any(c not in header for c in wanted):
            raise Declined("header")
        width, picks = len(header), [header.index(c) for c in wanted]
        if width < 2:
            raise Declined("one column")
        n = max(1, min(processes or os.cpu_count() or 1, 8, (size - data_start) // MIN_PART))
        bounds = [data_start]
        for k in range(1, n):  # cut at the first newline after each nth of the file
            f.seek(max(bounds[-1], data_start + k * (size - data_start) // n))
            f.readline()
            bounds.append(max(bounds[-1], f.tell()))
        bounds.append(size)
    ascii_only = codecs.lookup(encoding).name == "ascii"
    ranges = [(path, a, b, delimiter, width, picks, ascii_only)
              for a, b in zip(bounds, bounds[1:]) if b > a]
    return Scan(ranges, _run(_scan_range, ranges))


def _run(func, ranges, *extra):
    """``func(*range, *extra_k)`` for each range, in a process per range when there are several."""
    calls = [(*r, *(e[k] for e in extra)) for k, r in enumerate(ranges)]
    if len(calls) <= 1:
        return [func(*c) for c in calls]
    with ProcessPoolExecutor(len(calls), mp_context=get_context("fork")) as pool:
        return list(pool.map(func, *zip(*calls)))


class Scan:
    """What the first pass learnt: one numbering over all ranges (earlier ranges first,
    so first appearance in the file wins), the row count and whether every value is a
    whole number >= 0 (the table then keeps int64)."""

    def __init__(self, ranges, parts):
        import numpy as np

        self.ranges = ranges
        products: dict[str, int] = {}
        locations: dict[str, int] = {}
        self.maps = []  # per range: global code of each local product / location code
        for pnames, lnames, _, _, _ in parts:
            self.maps.append((
                np.fromiter((products.setdefault(p, len(products)) for p in pnames), np.uint32, len(pnames)),
                np.fromiter((locations.setdefault(x, len(locations)) for x in lnames), np.uint32,
                            len(lnames))))
        self.products, self.locations = list(products), list(locations)
        self.rows = sum(part[2] for part in parts)
        self.whole = all(part[3] for part in parts)
        self.counts = [part[4] for part in parts]  # per range: rows of each local product

    def product_counts(self):
        """Rows per product (global codes, int64), duplicates included."""
        import numpy as np

        total = np.zeros(len(self.products), np.int64)
        for (pmap, _), counts in zip(self.maps, self.counts):
            total[pmap] += counts  # pmap is one-to-one: no repeated index
        return total

    def columns(self):
        """The second pass, keeping every row: ``(pnames, lnames, pidx, lidx, vals)``."""
        import numpy as np

        pidx, lidx, vals = [], [], []
        for (pmap, lmap), (p, loc, v) in zip(self.maps, _run(_columns_range, self.ranges)):
            pidx.append(pmap[p] if len(p) else p)
            lidx.append(lmap[loc] if len(loc) else loc)
            vals.append(v)
        cat = (lambda xs, t: np.concatenate(xs) if xs else np.zeros(0, t))
        return (self.products, self.locations, cat(pidx, np.uint32), cat(lidx, np.uint32),
                cat(vals, np.float64))

    def fill_grid(self, table: str, offset: int, dtype) -> None:
        """The second pass, writing each block's values straight into the dense grid of
        ``P x (L+1)`` cells at ``offset`` of the file ``table`` (mapped shared, already
        holding -1 or NaN): no row is kept. Ranges fill in parallel; if that left fewer
        cells than rows (duplicates, whose last row must win) it is redone in file order."""
        args = (table, offset, len(self.products) * (len(self.locations) + 1),
                len(self.locations) + 1, dtype)
        extra = [[m[0] for m in self.maps], [m[1] for m in self.maps]]
        _run(_fill_range, self.ranges, *extra, *([a] * len(self.ranges) for a in args),
             [False] * len(self.ranges))
        if _filled(table, offset, args[2], dtype) != self.rows:
            for k, r in enumerate(self.ranges):
                _fill_range(*r, *self.maps[k], *args, True)

    def fill_runs(self, table: str, starts, locs_at: int, vals_at: int, dtype) -> None:
        """The second pass for a sparse table: each row's location code and value go to
        its product's run (``starts``: where each product's rows begin, duplicates
        included), in file order within the run, in the ``uint32`` and ``dtype`` arrays
        of ``self.rows`` entries at ``locs_at`` and ``vals_at`` of the file ``table``
        (mapped shared): no row is kept. Ranges fill in parallel, each from where the
        earlier ranges' rows of a product end."""
        import numpy as np

        before = starts[:-1].copy()
        cursors = []
        for (pmap, _), counts in zip(self.maps, self.counts):
            cursors.append(before[pmap])
            before[pmap] += counts
        n = len(self.ranges)
        _run(_runs_range, self.ranges, [m[0] for m in self.maps], [m[1] for m in self.maps], cursors,
             [table] * n, [self.rows] * n, [locs_at] * n, [vals_at] * n, [dtype] * n)


def _filled(table, offset, cells, dtype) -> int:
    import numpy as np

    grid = np.memmap(table, dtype, "r", offset, (cells,))
    return int(np.count_nonzero(grid >= 0) if dtype == np.int64 else np.count_nonzero(~np.isnan(grid)))


def _blocks(path: str, start: int, end: int, delimiter: str, width: int, picks, ascii_only: bool):
    """``(pcodes, lcodes, vals)`` per block of the whole lines in bytes ``[start, end)``;
    codes local to this range (the same in every pass), ``(products, locations)`` last."""
    products, locations = Numbering(), Numbering()
    sep = ord(delimiter)
    with open(path, "rb") as f:
        f.seek(start)
        left, pos = b"", start
        while pos < end:
            chunk = f.read(min(BLOCK, end - pos))
            if not chunk:
                break
            pos += len(chunk)
            data = left + chunk
            cut = data.rfind(b"\n") + 1 if pos < end else len(data)
            data, left = data[:cut], data[cut:]
            if not data:
                continue
            if not data.endswith(b"\n"):  # the last line of a file without a final newline
                data += b"\n"
            if ascii_only and not data.isascii():
                raise Declined("not ascii")
            yield parse_block(padded(data), len(data), sep, width, picks, products, locations)
    yield products, locations


def _scan_range(*args):
    import numpy as np

    rows, whole, counts = 0, True, np.zeros(0, np.int64)
    for out in _blocks(*args):
        if len(out) == 2:
            names = out[0].names
            return names, out[1].names, rows, whole, _grown(counts, len(names))[:len(names)]
        p, v = out[0], out[2]
        if len(p):
            block = np.bincount(p)
            counts = _grown(counts, len(block))
            counts[:len(block)] += block
        rows += len(v)
        whole = whole and bool(not len(v) or (v.min() >= 0 and v.max() < 2.0 ** 63
                                             and np.array_equal(v, np.floor(v))))


def _grown(counts, size: int):
    """``counts`` with at least ``size`` entries, the new ones 0 (doubling: few copies)."""
    import numpy as np

    if len(counts) >= size:
        return counts
    out = np.zeros(max(size, 2 * len(counts)), np.int64)
    out[:len(counts)] = counts
    return out


def _columns_range(*args):
    import numpy as np

    parts = [out for out in _blocks(*args) if len(out) == 3]
    cat = (lambda xs, t: np.concatenate(xs) if xs else np.zeros(0, t))
    return tuple(cat([part[k] for part in parts], t)
                 for k, t in enumerate((np.uint32, np.uint32, np.float64)))


def _fill_range(path, start, end, delimiter, width, picks, ascii_only, pmap, lmap, table, offset,
                cells, stride, dtype, in_order: bool) -> None:
    import numpy as np

    grid = np.memmap(table, dtype, "r+", offset, (cells,))
    for out in _blocks(path, start, end, delimiter, width, picks, ascii_only):
        if len(out) == 2:
            break
        p, loc, v = out
        flat = pmap[p].astype(np.int64) * stride + lmap[loc]
        if in_order:  # numpy does not promise which of repeated indices it writes last
            order = np.argsort(flat, kind="stable")
            flat, v = flat[order], v[order]
            last = np.append(flat[1:] != flat[:-1], True)
            flat, v = flat[last], v[last]
        grid[flat] = v
    grid.flush()
    del grid


def _runs_range(path, start, end, delimiter, width, picks, ascii_only, pmap, lmap, cursor, table,
                rows, locs_at, vals_at, dtype) -> None:
    import numpy as np

    locs = np.memmap(table, np.uint32, "r+", locs_at, (rows,)) if rows else None
    vals = np.memmap(table, dtype, "r+", vals_at, (rows,)) if rows else None
    for out in _blocks(path, start, end, delimiter, width, picks, ascii_only):
        if len(out) == 2:
            break
        p, loc, v = out
        if not len(p):
            continue
        order = np.argsort(p, kind="stable")  # a block's rows of one product, in file order
        p = p[order]
        head = np.empty(len(p), bool)
        head[0], head[1:] = True, p[1:] != p[:-1]
        first = np.flatnonzero(head)
        size = np.diff(np.append(first, len(p)))
        pos = cursor[p] + (np.arange(len(p)) - np.repeat(first, size))
        locs[pos] = lmap[loc[order]]
        vals[pos] = v[order]
        cursor[p[first]] += size
    if locs is not None:
        locs.flush()
        vals.flush()
        del locs, vals
