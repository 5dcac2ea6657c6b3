"""A fast path for parsing big, plain CSV files into columns, in parallel.

:func:`~adapters.csv_table.load_table` reads row by row through :mod:`csv`
(about 2 s per million rows with the table build); a 50-million-row file
would take minutes. Most ATP exports are plain: no quotes, one delimiter,
UTF-8. For those this module splits whole blocks with ``str`` methods (C
loops), maps ids to indices with ``dict`` lookups driven by ``map`` and
converts numbers with ``float`` exactly like the slow path, in one process
per core over line-aligned byte ranges of the file.

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
from array import array
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from multiprocessing import get_context

BLOCK = 4 << 20  # bytes parsed at once: long C loops, yet its lists of str stay ~50 MB
FIELD_LIMIT = 131072  # csv.field_size_limit(): a longer field is an error on the slow path
FAST_ENCODINGS = {"utf-8", "utf-8-sig", "ascii"}
MIN_PART = 8 << 20  # a file smaller than this is not worth a second process


class Declined(Exception):
    """The fast path does not handle this file; parse it with the csv module."""


def parse_columns(path: str, encoding: str, delimiter: str, columns, processes: int | None = None):
    """``(product names, location names, pidx, lidx, vals)`` of ``path``, or raise :class:`Declined`.

    Names are in order of first appearance (as the slow path numbers them);
    ``pidx``/``lidx`` are numpy ``uint32`` arrays and ``vals`` ``float64``, one
    entry per data row in file order.
    """
    import numpy as np

    if codecs.lookup(encoding).name not in FAST_ENCODINGS or delimiter.isspace():
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
        n = max(1, min(processes or os.cpu_count() or 1, 8, (size - data_start) // MIN_PART))
        bounds = [data_start]
        for k in range(1, n):  # cut at the first newline after each nth of the file
            f.seek(max(bounds[-1], data_start + k * (size - data_start) // n))
            f.readline()
            bounds.append(max(bounds[-1], f.tell()))
        bounds.append(size)
    ranges = [(path, a, b, delimiter, width, picks) for a, b in zip(bounds, bounds[1:]) if b > a]
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


def _parse_range(path: str, start: int, end: int, delimiter: str, width: int, picks):
    """Parse the whole lines in bytes ``[start, end)``; numbering local to this range."""
    import numpy as np

    pi, li, ai = picks
    products: dict[str, int] = {}
    locations: dict[str, int] = {}
    pidx, lidx, vals = [], [], []
    sep_space = delimiter + " "
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
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise Declined("not utf-8") from None
            del data
            if '"' in text or "\0" in text or sep_space in text:
                raise Declined("quotes, NUL or a space after a delimiter")
            if "\r" in text:
                if text.count("\r") != text.count("\r\n"):
                    raise Declined("a lone carriage return")
                text = text.replace("\r\n", "\n")
            lines = text.split("\n")
            del text
            if "" in lines:  # blank lines, and the empty piece after the last newline
                lines = list(filter(None, lines))
            if not lines:
                continue
            counts = list(map(str.count, lines, repeat(delimiter)))
            if counts.count(width - 1) != len(lines) or max(map(len, lines)) > FIELD_LIMIT:
                raise Declined("a row with the wrong number of fields")
            fields = delimiter.join(lines).split(delimiter)
            del lines, counts
            prods, locs, atps = fields[pi::width], fields[li::width], fields[ai::width]
            del fields
            if "" in prods or "" in locs:
                raise Declined("an empty product or location")
            for p in dict.fromkeys(prods):
                if p not in products:
                    products[p] = len(products)
            for loc in dict.fromkeys(locs):
                if loc not in locations:
                    locations[loc] = len(locations)
            try:
                v = np.frombuffer(array("d", map(float, atps)), np.float64)
            except ValueError:
                raise Declined("a value that is not a number") from None
            if not np.isfinite(v).all():
                raise Declined("NaN or infinite value")
            pidx.append(np.fromiter(map(products.__getitem__, prods), np.uint32, len(prods)))
            lidx.append(np.fromiter(map(locations.__getitem__, locs), np.uint32, len(locs)))
            vals.append(v)
    cat = (lambda xs, t: np.concatenate(xs) if xs else np.zeros(0, t))
    return (list(products), list(locations), cat(pidx, np.uint32), cat(lidx, np.uint32),
            cat(vals, np.float64))
