"""Writing table files (the format :class:`~adapters.csv_shared.MappedTable` reads).

:func:`write_table` writes a table from its rows held in numpy columns;
:func:`write_dense` writes a dense table whose grid the caller fills in place
through a shared mapping of the file, and :func:`write_sparse` a sparse one
whose per-product runs the caller fills in place, then sorted and rid of
duplicates here a slice at a time: a big build never holds the rows or the
table in its own memory: its pages are the new table's, nothing else.
"""
from __future__ import annotations

import json
import os
from zlib import crc32

from atp_bridge.adapters.csv_shared import MAGIC, VERSION, _header


def _align(n: int) -> int:
    return (n + 7) & ~7


def write_table(path: str, meta: dict, pnames: list, lnames: list, pidx, lidx, vals,
                layout: str | None = None) -> dict:
    """Write the table of rows ``(pidx[r], lidx[r], vals[r])`` (numpy arrays, file order)
    to ``path``; returns the header written. The last of duplicate rows wins.

    Same choices and answers as the reference table of the tests: ``dense``
    when ``4 * rows >= P * L`` (else ``sparse``), whole numbers >= 0 kept as
    int64 with -1 for unknown, else float64 with NaN.
    """
    import numpy as np

    rows, n_p, n_l = len(vals), len(pnames), len(lnames)
    layout = layout or ("dense" if 4 * rows >= n_p * n_l else "sparse")
    whole = bool(rows == 0 or (vals.min() >= 0 and vals.max() < 2.0 ** 63
                               and np.array_equal(vals, np.floor(vals))))
    vtype, vcode = (np.int64, "q") if whole else (np.float64, "d")
    sections = _name_sections(pnames, lnames, np)
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
    header, reserve, end = _plan(meta, rows, n_p, n_l, layout, whole,
                                 {name: (arr.nbytes, code) for name, (arr, code) in sections.items()})
    with open(path, "wb") as f:
        _write_sections(f, header, reserve, sections, np)
        f.truncate(max(end, f.tell()))
        f.flush()
        os.fsync(f.fileno())  # a disk volume: the rename must not outrun the data
    return header


def write_dense(path: str, meta: dict, pnames: list, lnames: list, rows: int, whole: bool,
                fill) -> dict:
    """Write a ``dense`` table whose grid ``fill(path, offset, dtype)`` fills in place
    (a shared mapping of the file, already holding -1 or NaN), so the builder never
    holds the rows or the grid in its own memory; returns the header written."""
    import numpy as np

    n_p, n_l = len(pnames), len(lnames)
    vtype, vcode = (np.int64, "q") if whole else (np.float64, "d")
    sections = _name_sections(pnames, lnames, np)
    cells = n_p * (n_l + 1)
    header, reserve, end = _plan(meta, rows, n_p, n_l, "dense", whole,
                                 {**{name: (arr.nbytes, code) for name, (arr, code) in sections.items()},
                                  "grid": (8 * cells, vcode)})
    offset = header["sections"]["grid"][0]
    with open(path, "w+b") as f:  # read too: the grid is mapped
        _write_sections(f, header, reserve, sections, np)
        f.truncate(end)
        if cells:
            grid = np.memmap(f, vtype, "r+", offset, (cells,))
            step = 1 << 22  # a chunk at a time: no grid-sized temporary
            for k in range(0, cells, step):
                grid[k:k + step] = -1 if whole else np.nan
            grid.flush()
            del grid
            fill(path, offset, vtype)
        os.fsync(f.fileno())
    return header


SORT_ROWS = 1 << 19  # rows sorted at once by write_sparse: ~20 MB of temporaries


def write_sparse(path: str, meta: dict, pnames: list, lnames: list, rows: int, whole: bool,
                 counts, fill) -> dict:
    """Write a ``sparse`` table of ``rows`` rows, ``counts[p]`` of them product ``p``'s
    (duplicates included). ``fill(path, starts, locs_at, vals_at, dtype)`` writes every
    row's location code and value into its product's run (``starts[p]`` on), in file
    order, through a shared mapping; each run is then sorted by location here, the last
    of duplicate rows kept, and the runs moved together. The builder holds a slice of
    ``SORT_ROWS`` rows at a time, never the rows; returns the header written."""
    import numpy as np

    n_p, n_l = len(pnames), len(lnames)
    vtype, vcode = (np.int64, "q") if whole else (np.float64, "d")
    sections = _name_sections(pnames, lnames, np)
    starts = np.zeros(n_p + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    header, reserve, end = _plan(meta, rows, n_p, n_l, "sparse", whole, {
        **{name: (arr.nbytes, code) for name, (arr, code) in sections.items()},
        "starts": (starts.nbytes, "q"), "locs": (4 * rows, "I"), "vals": (8 * rows, vcode)})
    at = {name: header["sections"][name][0] for name in ("starts", "locs", "vals")}
    with open(path, "w+b") as f:  # read too: the runs are mapped
        _write_sections(f, header, reserve, sections, np)
        f.truncate(end)
        kept = rows
        if rows:
            fill(path, starts, at["locs"], at["vals"], vtype)
            kept = _sort_runs(path, starts, at["locs"], at["vals"], vtype, n_l, np)
        f.seek(at["starts"])
        f.write(memoryview(starts).cast("B"))
        if kept < rows:  # duplicates: the values move up behind the shorter locations
            vals_at = _align(at["locs"] + 4 * kept)
            src = np.memmap(f, vtype, "r+", at["vals"], (kept,))
            dst = np.memmap(f, vtype, "r+", vals_at, (kept,))
            for k in range(0, kept, SORT_ROWS):
                dst[k:k + SORT_ROWS] = src[k:k + SORT_ROWS]  # forward: dst is below src
            dst.flush()
            del src, dst
            header["sections"]["locs"][1] = 4 * kept
            header["sections"]["vals"] = [vals_at, 8 * kept, vcode]
            f.truncate(_align(vals_at + 8 * kept))
            _write_header(f, header, reserve)
        f.flush()
        os.fsync(f.fileno())
    return header


def _sort_runs(path, starts, locs_at, vals_at, vtype, n_l, np) -> int:
    """Sort each product's run of the file's ``locs``/``vals`` by location, keep the last of
    equal locations (file order is kept within a run) and close the gaps; ``starts`` is
    updated in place. Returns the rows kept."""
    old = starts.copy()  # where the runs are now; starts gets where they end up
    rows = int(old[-1])
    locs = np.memmap(path, np.uint32, "r+", locs_at, (rows,))
    vals = np.memmap(path, vtype, "r+", vals_at, (rows,))
    n_p, a, w = len(old) - 1, 0, 0
    while a < n_p:
        b = min(n_p, max(a + 1, int(np.searchsorted(old, old[a] + SORT_ROWS, "right")) - 1))
        lo, hi = int(old[a]), int(old[b])
        loc, val = np.array(locs[lo:hi]), np.array(vals[lo:hi])
        key = np.repeat(np.arange(b - a, dtype=np.int64), np.diff(old[a:b + 1])) * n_l + loc
        if len(key) > 1 and not (key[1:] > key[:-1]).all():  # a file sorted like the table: skipped
            order = np.argsort(key, kind="stable")
            key, loc, val = key[order], loc[order], val[order]
            last = _last_of_runs(key, np)
            key, loc, val = key[last], loc[last], val[last]
        if w != lo or len(loc) != hi - lo:
            locs[w:w + len(loc)] = loc
            vals[w:w + len(val)] = val
        starts[a + 1:b + 1] = w + np.cumsum(np.bincount(key // n_l, minlength=b - a))
        w += len(loc)
        a = b
    locs.flush()
    vals.flush()
    del locs, vals
    return w


def set_header(path: str, **fields) -> None:
    """Change header fields of a written table in place (e.g. a hash known only at the
    end); the new header must fit the space reserved for it."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        header = _header(f.read(16), f, size)
        reserve = min(off for off, _, _ in header["sections"].values()) - 16 if header["sections"] \
            else size - 16
        _write_header(f, {**header, **fields}, reserve)
        f.flush()
        os.fsync(f.fileno())  # clean pages: workers share them, and the rename must not outrun them


HEADER_SLACK = 1024  # room for fields set after the layout is fixed (set_header)


def _plan(meta, rows, n_p, n_l, layout, whole, sizes):
    """The header and the 8-byte aligned section offsets for sections of ``sizes``
    (name -> (bytes, typecode)); returns ``(header, reserved header bytes, file size)``."""
    header = {**meta, "version": VERSION, "rows": rows, "products": n_p, "locations": n_l,
              "layout": layout, "whole": whole, "sections": {}}
    # offsets depend on the header's length; a fixed-width header avoids the loop
    reserve = _align(len(json.dumps(header)) + 64 * len(sizes) + HEADER_SLACK)
    offset = 16 + reserve
    for name, (nbytes, code) in sizes.items():
        header["sections"][name] = [offset, int(nbytes), code]
        offset = _align(offset + nbytes)
    return header, reserve, offset


def _write_header(f, header: dict, reserve: int) -> None:
    raw = json.dumps(header).encode()
    if len(raw) > reserve:
        raise ValueError(f"table header of {len(raw)} bytes does not fit its {reserve}")
    f.seek(0)
    f.write(MAGIC + len(raw).to_bytes(8, "little") + raw.ljust(reserve, b" "))


def _name_sections(pnames: list, lnames: list, np) -> dict:
    """The sections of the product and location names: name -> (array, typecode)."""
    pblob, poffs, pslots = _names(pnames, np)
    lblob, loffs, lslots = _names(lnames, np)
    return {"pnames": (pblob, "B"), "poffs": (poffs, "q"), "pslots": (pslots, "I"),
            "lnames": (lblob, "B"), "loffs": (loffs, "q"), "lslots": (lslots, "I")}


def _write_sections(f, header: dict, reserve: int, sections: dict, np) -> None:
    """The header, then each of ``sections`` at its offset in the header."""
    _write_header(f, header, reserve)
    for name, (arr, _) in sections.items():
        f.seek(header["sections"][name][0])
        f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))


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


