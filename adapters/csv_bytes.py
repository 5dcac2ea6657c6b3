"""Parsing plain CSV blocks with numpy on the raw bytes: the fast parser's inner loop.

A block is whole lines of a plain file (see :mod:`adapters.csv_fast`). Its
lines and fields are found with vectorised byte comparisons; each id is
encoded as one ``uint64`` key (the id's own bytes when it has at most 8, else
a hash of its 8-byte words, checked against the bytes of the name it was
numbered as, so a collision is never served) and numbered in order of first
appearance by :class:`Numbering`; whole-number values of up to 15 digits are
converted in numpy, any other value by ``float`` exactly like the csv
module's path. Python touches each distinct id once, not each row.

Anything the csv module would read differently (quotes, a NUL, a lone
``\\r``, a space after a delimiter, a row with the wrong number of fields, an
empty id or value, bytes that are not UTF-8) raises :class:`Declined`.
"""
from __future__ import annotations

import numpy as np

FIELD_LIMIT = 131072  # csv.field_size_limit(): a longer line goes to the csv module
PAD = 16  # zero bytes after a block: every 8-byte word read at a field's start is inside
_MASK = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [2**64 - 1], np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit constant (golden ratio): mixes the words


class Declined(Exception):
    """The fast path does not handle this file; parse it with the csv module."""


def padded(data: bytes) -> np.ndarray:
    """``data`` as uint8 with ``PAD`` zero bytes after it (what :func:`parse_block` reads)."""
    raw = np.zeros(len(data) + PAD, np.uint8)
    raw[:len(data)] = np.frombuffer(data, np.uint8)
    return raw


class Numbering:
    """Ids -> dense codes in order of first appearance, over blocks; ``names`` in code order."""

    def __init__(self):
        self.names: list[str] = []
        self._keys = np.zeros(0, np.uint64)  # sorted, with the code of each
        self._codes = np.zeros(0, np.uint32)
        self._lens = np.zeros(0, np.int64)  # for the collision check of hashed (long) ids
        self._words: list[np.ndarray] = []
        self._hashed = False  # any name longer than 8 bytes (its key is a hash)

    def encode(self, raw, words, starts, lens) -> np.ndarray:
        """Codes (uint32) of the ids at ``raw[starts:starts + lens]``, numbering new ones."""
        nwords = int(lens.max() + 7) // 8
        keys, parts = _keys(words, starts, lens, nwords)
        change = np.flatnonzero(keys[1:] != keys[:-1]) + 1  # a file sorted by product: few runs
        heads = np.concatenate(([0], change))
        hkeys = keys[heads]
        pos = np.minimum(np.searchsorted(self._keys, hkeys), max(len(self._keys) - 1, 0))
        new = self._keys[pos] != hkeys if len(self._keys) else np.ones(len(hkeys), bool)
        if new.any():
            self._add(raw, starts, lens, parts, heads[new], hkeys[new])
            pos = np.searchsorted(self._keys, hkeys)
        codes = np.repeat(self._codes[pos], np.diff(np.append(heads, len(keys))))
        if nwords > 1 or self._hashed:  # every row's bytes must be its code's name's bytes
            ok = self._lens[codes] == lens
            for i in range(min(len(parts), len(self._words))):
                ok &= self._words[i][codes] == parts[i]
            if not ok.all():
                raise Declined("two ids with one hash")
        return codes

    def _add(self, raw, starts, lens, parts, rows, keys) -> None:
        uniq, first = np.unique(keys, return_index=True)
        order = np.argsort(first, kind="stable")  # first appearance in the block
        rows = rows[first[order]]
        codes = np.arange(len(self.names), len(self.names) + len(rows), dtype=np.uint32)
        try:
            self.names.extend(raw[s:s + n].tobytes().decode("utf-8")
                              for s, n in zip(starts[rows].tolist(), lens[rows].tolist()))
        except UnicodeDecodeError:
            raise Declined("not utf-8") from None
        grow = max(len(parts), len(self._words))
        old = len(self._lens)
        self._words = [np.concatenate((self._words[i] if i < len(self._words) else
                                       np.zeros(old, np.uint64),
                                       parts[i][rows] if i < len(parts) else
                                       np.zeros(len(rows), np.uint64))) for i in range(grow)]
        self._lens = np.concatenate((self._lens, lens[rows]))
        self._hashed = self._hashed or len(parts) > 1
        allkeys = np.concatenate((self._keys, uniq[order]))
        sort = np.argsort(allkeys, kind="stable")
        self._keys, self._codes = allkeys[sort], np.concatenate((self._codes, codes))[sort]


def _keys(words, starts, lens, nwords):
    """One uint64 per id: its bytes (<= 8), else a hash of its masked 8-byte words."""
    parts = []
    for i in range(nwords):
        part = words[starts + 8 * i] if i == 0 else words[np.minimum(starts + 8 * i, len(words) - 1)]
        part &= _MASK[np.clip(lens - 8 * i, 0, 8)]
        parts.append(part)
    if nwords == 1:  # an id has no NUL byte: its masked word is the id itself
        return parts[0], parts
    h = np.zeros(len(starts), np.uint64)
    for part in parts:
        h ^= part
        h *= _MIX
        h ^= h >> np.uint64(29)
    return np.where(lens <= 8, parts[0], h), parts  # short ids keep one key in every block


def parse_block(raw, n: int, delimiter: int, width: int, picks, products: Numbering,
                locations: Numbering):
    """``(pcodes, lcodes, vals)`` of the whole lines in ``raw[:n]`` (``raw`` from
    :func:`padded`, ``raw[n - 1]`` a newline); raises :class:`Declined`."""
    data = raw[:n]
    if np.count_nonzero(data == 34) or np.count_nonzero(data == 0):
        raise Declined("quotes or NUL")
    if np.count_nonzero(data >= 128):
        try:
            data.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            raise Declined("not utf-8") from None
    ends = np.flatnonzero(data == 10)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    crs = np.count_nonzero(data == 13)
    if crs:
        before_nl = (ends > starts) & (raw[ends - 1] == 13)
        if np.count_nonzero(before_nl) != crs:
            raise Declined("a lone carriage return")
        ends -= before_nl
    full = ends > starts  # blank lines are skipped, as by the csv module
    if not full.all():
        starts, ends = starts[full], ends[full]
    rows = len(starts)
    if not rows:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.float64)
    if int((ends - starts).max()) > FIELD_LIMIT:
        raise Declined("a long line")
    delims = np.flatnonzero(data == delimiter)
    if len(delims) != (width - 1) * rows:
        raise Declined("a row with the wrong number of fields")
    delims = delims.reshape(rows, width - 1)
    if not ((delims[:, 0] >= starts).all() and (delims[:, -1] < ends).all()):
        raise Declined("a row with the wrong number of fields")
    if np.count_nonzero(raw[delims[:, :] + 1] == 32):
        raise Declined("a space after a delimiter")
    bounds = []
    for f in picks:
        first = starts if f == 0 else delims[:, f - 1] + 1
        bounds.append((first, (delims[:, f] if f < width - 1 else ends) - first))
    (ps, pl), (ls, ll), (vs, vl) = bounds
    if not (pl.min() > 0 and ll.min() > 0 and vl.min() > 0):
        raise Declined("an empty product, location or value")
    words = np.ndarray((len(raw) - 7,), "<u8", raw, 0, (1,))  # the 8 bytes at every offset
    return (products.encode(raw, words, ps, pl), locations.encode(raw, words, ls, ll),
            _values(raw, vs, vl))


def _values(raw, starts, lens) -> np.ndarray:
    """Digits-only values (up to 15, exact in a float64) in numpy, the rest by ``float``."""
    top = min(int(lens.max()), 15)
    value = np.zeros(len(starts), np.int64)
    ok = lens <= 15
    for i in range(top):
        digit = raw[np.minimum(starts + i, len(raw) - 1)] - np.uint8(48)  # wraps: non-digits > 9
        active = lens > i
        ok &= ~active | (digit <= 9)
        value = np.where(active, value * 10 + digit, value)
    out = value.astype(np.float64)
    other = np.flatnonzero(~ok)
    if len(other):
        try:
            out[other] = [float(raw[s:s + n].tobytes().decode("utf-8"))
                          for s, n in zip(starts[other].tolist(), lens[other].tolist())]
        except ValueError:
            raise Declined("a value that is not a number") from None
        if not np.isfinite(out[other]).all():
            raise Declined("NaN or infinite value")
    return out
