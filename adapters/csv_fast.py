"""A fast path for parsing big, plain CSV files into columns, in parallel.

:func:`~adapters.csv_table.load_table` reads row by row through :mod:`csv`
(about 2 s per million rows with the table build); a 50-million-row file
would take minutes. Most ATP exports are plain: no quotes, one delimiter,
UTF-8. For those this module cuts the file into line-aligned byte ranges,
one process per core, and parses each in blocks of whole lines with numpy on
the raw bytes (:mod:`adapters.csv_bytes`: fields found by byte comparisons,
ids encoded as 64-bit keys and numbered per distinct id, whole numbers
converted in numpy, other values by ``float`` like the slow path): about
0.1 us of CPU per row.

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

BLOCK = 8 << 20  # bytes parsed at once: long numpy loops, ~60 MB of temporaries
FAST_ENCODINGS = {"utf-8", "utf-8-sig", "ascii"}
MIN_PART = 8 << 20  # a file smaller than this is not worth a second process


def parse_columns(path: str, encoding: str, delimiter: str, columns, processes: int | None = None):
    """``(product names, location names, pidx, lidx, vals)`` of ``path``, or raise :class:`Declined`.

    Names are in order of first appearance (as the slow path numbers them);
    ``pidx``/``lidx`` are numpy ``uint32`` arrays and ``vals`` ``float64``, one
    entry per data row in file order.
    """
    import numpy as np

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
    if len(ranges) <= 1:
        parts = [_parse_range(*r) for r in ranges]
    else:
        with ProcessPoolExecutor(len(ranges), mp_context=get_context("fork")) as pool:
            parts = list(pool.map(_parse_range, *zip(*ranges)))
    return _merge(parts, np)


def _merge(parts, np):
    """One numbering over all parts: earlier parts first, so first appearance in the file wins."""
    products: dict[str, int] = {}
    locations: dict[str, int] = {}
    pidx, lidx, vals = [], [], []
    for pnames, lnames, pi, li, v in parts:
        pmap = np.fromiter((products.setdefault(p, len(products)) for p in pnames), np.uint32, len(pnames))
        lmap = np.fromiter((locations.setdefault(x, len(locations)) for x in lnames), np.uint32, len(lnames))
        pidx.append(pmap[pi] if len(pi) else pi)
        lidx.append(lmap[li] if len(li) else li)
        vals.append(v)
    cat = (lambda xs, t: np.concatenate(xs) if xs else np.zeros(0, t))
    return (list(products), list(locations), cat(pidx, np.uint32), cat(lidx, np.uint32),
            cat(vals, np.float64))


def _parse_range(path: str, start: int, end: int, delimiter: str, width: int, picks,
                 ascii_only: bool = False):
    """Parse the whole lines in bytes ``[start, end)``; numbering local to this range."""
    import numpy as np

    products, locations = Numbering(), Numbering()
    pidx, lidx, vals = [], [], []
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
            p, loc, v = parse_block(padded(data), len(data), sep, width, picks, products, locations)
            del data
            pidx.append(p)
            lidx.append(loc)
            vals.append(v)
    cat = (lambda xs, t: np.concatenate(xs) if xs else np.zeros(0, t))
    return (products.names, locations.names, cat(pidx, np.uint32), cat(lidx, np.uint32),
            cat(vals, np.float64))
