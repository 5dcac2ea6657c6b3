"""CSV adapter: ATP from a ``product,location,atp`` file, held in memory.

The whole file is parsed into a compact, immutable :class:`CsvTable` (string ->
index dicts plus flat ``array`` columns, no per-row Python objects), so a
million rows cost tens of megabytes, not hundreds. A daemon thread polls the
file and swaps in a new table only when a complete, valid file was read; until
then requests keep the previous table. Writers should still prefer writing a
temporary file and renaming it over the old one (atomic on POSIX).
"""
from __future__ import annotations

import codecs
import csv
import logging
import math
import os
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from operator import itemgetter

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from adapters.base import Adapter, Batch, Health
from atp_bridge import metrics
from atp_bridge.errors import AdapterUnavailable

log = logging.getLogger("atp_bridge.adapters.csv")

DEFAULT_COLUMNS = {"product": "product", "location": "location", "atp": "atp"}
MAX_REPORTED = 20  # bad rows quoted in an error message; the rest are only counted
_NAN = math.nan
_CHANGED = object()  # _read(): the file changed while it was being read


class _ColumnsSchema(Schema):
    class Meta:
        unknown = RAISE

    product = fields.String(load_default="product", validate=validate.Length(min=1))
    location = fields.String(load_default="location", validate=validate.Length(min=1))
    atp = fields.String(load_default="atp", validate=validate.Length(min=1))


class CsvOptionsSchema(Schema):
    """The YAML keys of ``type: csv``; a relative ``path`` resolves against the config directory."""

    class Meta:
        unknown = RAISE

    path = fields.String(required=True, validate=validate.Length(min=1))
    delimiter = fields.String(load_default=",", validate=[
        validate.Length(equal=1), validate.NoneOf(['"', "\r", "\n"])])
    columns = fields.Nested(_ColumnsSchema, load_default=lambda: dict(DEFAULT_COLUMNS))
    reload_interval_s = fields.Float(load_default=2.0,
                                     validate=validate.Range(min=0, min_inclusive=False))
    encoding = fields.String(load_default="utf-8-sig")  # -sig: a leading BOM is dropped

    @validates("encoding")
    def _known_encoding(self, value: str, **kwargs) -> None:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValidationError(f"unknown encoding {value!r}") from None


class _FormatError(ValueError):
    """The file's content is unusable; the message says where and why."""


class CsvTable:
    """An immutable ATP table answering products x locations in one call.

    Two layouts with identical answers, picked by fill ratio: ``dense`` (a
    P x (L+1) float grid, NaN = unknown; the extra column is where unknown
    locations point, so the hot loop has no branch for them) when the file has
    at least P*L/4 rows, else ``sparse`` (per product a run of sorted location
    indices with aligned values, searched with ``bisect``).
    """

    __slots__ = ("rows", "products", "locations", "layout",
                 "_products", "_locations", "_grid", "_starts", "_locs", "_vals")

    def __init__(self, products: dict, locations: dict, pidx: array, lidx: array, vals: array,
                 layout: str | None = None):
        self._products, self._locations, self.rows = products, locations, len(vals)
        self.products = n_p = len(products)  # counts; the dicts stay private
        self.locations = n_l = len(locations)
        self.layout = layout or ("dense" if 4 * len(vals) >= n_p * n_l else "sparse")
        self._grid = self._starts = self._locs = self._vals = None
        if self.layout == "dense":
            stride = n_l + 1
            grid = array("d", [_NAN]) * (n_p * stride)
            for i, j, v in zip(pidx, lidx, vals):  # file order: the last duplicate wins
                grid[i * stride + j] = v
            self._grid = grid
            return
        # Stable counting sort of row numbers by product, then each product's run
        # by location; among duplicates the later row comes last and wins.
        starts = array("q", bytes(8 * (n_p + 1)))
        for i in pidx:
            starts[i + 1] += 1
        for i in range(n_p):
            starts[i + 1] += starts[i]
        slot = array("q", starts)
        order = array("q", bytes(8 * len(vals)))
        for r, i in enumerate(pidx):
            order[slot[i]] = r
            slot[i] += 1
        out_starts, out_locs, out_vals = array("q", [0]), array("I"), array("d")
        for i in range(n_p):
            run = order[starts[i]:starts[i + 1]]
            prev = -1
            for r in (sorted(run, key=lidx.__getitem__) if len(run) > 1 else run):
                j = lidx[r]
                if j == prev:
                    out_vals[-1] = vals[r]
                else:
                    out_locs.append(j)
                    out_vals.append(vals[r])
                    prev = j
            out_starts.append(len(out_locs))
        self._starts, self._locs, self._vals = out_starts, out_locs, out_vals

    def lookup(self, products: Sequence[str], locations: Sequence[str]) -> list:
        """ATP of every (product, location), product-major; None where unknown."""
        width = len(self._locations)
        lget = self._locations.get
        lids = [lget(loc, width) for loc in locations]  # width = "unknown location"
        nones = [None] * len(lids)
        pget = self._products.get
        out: list = []
        extend = out.extend
        if self._grid is not None:
            grid, stride = self._grid, width + 1
            for p in products:
                i = pget(p)
                if i is None:
                    extend(nones)
                else:
                    row = grid[i * stride:(i + 1) * stride]
                    extend([v if (v := row[j]) == v else None for j in lids])  # NaN != NaN
        else:
            starts, locs, vals = self._starts, self._locs, self._vals
            short = 4 * len(lids)
            for p in products:
                i = pget(p)
                if i is None:
                    extend(nones)
                    continue
                lo, hi = starts[i], starts[i + 1]
                if hi - lo <= short:  # a small dict beats one bisect per pair
                    extend(map(dict(zip(locs[lo:hi], vals[lo:hi])).get, lids))
                else:
                    extend([vals[k] if (k := bisect_left(locs, j, lo, hi)) < hi and locs[k] == j
                            else None for j in lids])
        return out


def load_table(lines: Iterable[str], *, delimiter: str = ",",
               columns: Mapping[str, str] = DEFAULT_COLUMNS, layout: str | None = None) -> CsvTable:
    """Parse CSV text (an open file or any iterable of lines) into a :class:`CsvTable`.

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
    return CsvTable(products, locations, pidx, lidx, vals, layout)


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


class CsvAdapter(Adapter):
    """ATP from a CSV file, answered from memory and reloaded when the file changes.

    The first load happens in the constructor; its failure is recorded (health
    turns false, ``lookup`` raises :class:`AdapterUnavailable`), not raised. A
    daemon thread (``atp-bridge-csv-<name>``, one per process: build adapters
    after a fork) stats the file every ``reload_interval_s``; a changed file is
    read once its stat held still for one more poll, and swapped in only if it
    parsed and did not change during the read. A bad file keeps the previous
    table and marks the adapter unhealthy until a good one loads.
    ``reload_interval_s=None`` disables polling (use :meth:`reload_now`).
    """

    options_schema = CsvOptionsSchema
    blocking = False

    def __init__(self, name: str, *, path: str, delimiter: str = ",",
                 columns: Mapping[str, str] | None = None, reload_interval_s: float | None = 2.0,
                 encoding: str = "utf-8-sig", locations: Sequence[str] = ("*",),
                 match_on: str = "external_identifier"):
        super().__init__(name, locations=locations, match_on=match_on)
        columns = {**DEFAULT_COLUMNS, **(columns or {})}
        if set(columns) != set(DEFAULT_COLUMNS):
            raise ValueError(f"columns: unknown keys {sorted(set(columns) - set(DEFAULT_COLUMNS))}")
        if len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self.path = os.fspath(path)
        self.delimiter, self.columns, self.encoding = delimiter, columns, encoding
        self.reload_interval_s = reload_interval_s
        # (table, loaded_at, last_error), replaced as a whole so readers see one state
        self._state: tuple[CsvTable | None, float | None, str | None] = (None, None, None)
        self._seen: tuple | None = None  # stat signature of the version last read
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload_now()
        if reload_interval_s:
            self._thread = threading.Thread(target=self._poll, name=f"atp-bridge-csv-{name}",
                                            daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, spec, upstream: Adapter | None = None) -> "CsvAdapter":
        """Build from an AdapterSpec; a relative ``path`` is relative to ``spec.base_dir``."""
        options = dict(spec.options)
        path = os.path.normpath(os.path.join(spec.base_dir, os.path.expanduser(options.pop("path"))))
        return cls(spec.name, path=path, locations=spec.locations, match_on=spec.match_on, **options)

    def lookup(self, batch: Batch) -> list:
        table, _, error = self._state
        if table is None:
            raise AdapterUnavailable(self.name, f"no data: {error or self.path + ': not loaded yet'}")
        return table.lookup(batch.products, batch.locations)

    def health(self) -> Health:
        table, loaded_at, error = self._state
        info = {
            "path": self.path,
            "rows": table.rows if table else 0,
            "products": table.products if table else 0,
            "locations": table.locations if table else 0,
            "loaded_at": (datetime.fromtimestamp(loaded_at, timezone.utc).isoformat(timespec="seconds")
                          if loaded_at else None),
            "last_error": error,
        }
        if table is not None and error is None:
            return Health(True, "ok", info)
        return Health(False, error or f"{self.path}: not loaded yet", info)

    def reload_now(self) -> bool:
        """Read the file now and swap the new table in; True when it was swapped."""
        with self._load_lock:
            started = time.perf_counter()
            table, error, sig = self._read()
            if sig is _CHANGED:
                log.info("csv adapter %r: %s changed while being read; retrying later",
                         self.name, self.path)
                return False
            self._seen = sig
            old, loaded_at, _ = self._state
            if table is None:
                metrics.CSV_RELOADS.labels(self.name, "error").inc()
                self._state = (old, loaded_at, error)
                log.warning("csv adapter %r: %s; %s", self.name, error,
                            "keeping the previous data" if old else "no data to serve")
                return False
            self._state = (table, time.time(), None)
            metrics.CSV_RELOADS.labels(self.name, "ok").inc()
            metrics.CSV_ROWS.labels(self.name).set(table.rows)
            log.info("csv adapter %r: loaded %s: %d rows, %d products x %d locations (%s) in %.2fs",
                     self.name, self.path, table.rows, table.products, table.locations,
                     table.layout, time.perf_counter() - started)
            return True

    def _read(self) -> tuple:
        """(table, error, stat signature read); signature ``_CHANGED`` if the file moved."""
        try:
            f = open(self.path, encoding=self.encoding, newline="")
        except FileNotFoundError:
            return None, f"{self.path}: file not found", None
        except OSError as e:
            return None, f"{self.path}: cannot open: {e.strerror or e}", _path_signature(self.path)
        with f:
            before = _signature(os.fstat(f.fileno()))
            try:
                table, error = load_table(f, delimiter=self.delimiter, columns=self.columns), None
            except UnicodeDecodeError as e:
                table, error = None, f"{self.path}: not valid {self.encoding} text: {e.reason}"
            except (ValueError, OSError) as e:
                table, error = None, f"{self.path}: {e}"
        if _path_signature(self.path) != before:
            return None, None, _CHANGED
        return table, error, before

    def _poll(self) -> None:
        pending = None
        while not self._stop.wait(self.reload_interval_s):
            try:
                sig = _path_signature(self.path)
                if sig == self._seen:
                    pending = None
                elif sig != pending:  # changed: wait until it holds still for one more poll
                    pending = sig
                else:
                    pending = None
                    self.reload_now()
            except Exception:  # the poller must outlive any surprise
                log.exception("csv adapter %r: reload of %s failed", self.name, self.path)

    def close(self) -> None:
        """Stop the polling thread (waits for a reload in progress)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def __repr__(self) -> str:
        return f"CsvAdapter({self.name!r}, path={self.path!r})"
