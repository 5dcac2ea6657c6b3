"""CSV adapter: ATP from a ``product,location,atp`` file, one shared copy per machine.

The file is parsed once into a table file in ``table_dir`` (see
:mod:`adapters.csv_build`), which every worker maps read-only
(:class:`~adapters.csv_shared.MappedTable`): four workers hold one copy, and a
worker that starts or restarts maps the table that is already built instead of
parsing the file again. The parse runs in a child process, so it never holds
the serving worker's GIL, and a reload's child in the idle scheduling class
(:mod:`adapters.csv_spawn`), so it never takes a core from a request. A daemon
thread polls the file and swaps in the new table only when a complete, valid
file was read; until then requests keep the previous table, which is unmapped
off the event loop once none holds it. Writers should still prefer writing a temporary file and
renaming it over the old one (atomic on POSIX).
"""
from __future__ import annotations

import codecs
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from atp_bridge.adapters.base import Adapter, Batch, Health
from atp_bridge.adapters.csv_build import (TableDirError, build, build_running, open_table,
                                          previous_table, source_key, table_dir, try_lock)
from atp_bridge.adapters.csv_spawn import build_in_subprocess
from atp_bridge.adapters.csv_shared import MappedTable
from atp_bridge.adapters.csv_table import CHANGED, DEFAULT_COLUMNS, _path_signature
from atp_bridge.filewatch import off_hub, poll_settled
from atp_bridge import metrics
from atp_bridge.config_types import resolve_file
from atp_bridge.errors import AdapterUnavailable

log = logging.getLogger("atp_bridge.adapters.csv")
NICE_ENV = "ATP_BRIDGE_RELOAD_NICE"
RELOAD_NICE = 10  # see docs/benchmarks.md, issue 18: what it costs a reload and the requests
IDLE_ENV = "ATP_BRIDGE_RELOAD_IDLE_S"
RELOAD_IDLE_S = 15.0  # starved that long (under 5% of a core): start again at RELOAD_NICE


def reload_nice() -> int:
    """The reload builder's niceness: ``$ATP_BRIDGE_RELOAD_NICE`` (0-19), else ``RELOAD_NICE``."""
    raw = os.environ.get(NICE_ENV)
    try:
        return RELOAD_NICE if raw is None else min(19, max(0, int(raw)))
    except ValueError:
        log.warning("%s=%r is not a whole number; the reload builder runs at nice %d",
                    NICE_ENV, raw, RELOAD_NICE)
        return RELOAD_NICE


def reload_idle_s() -> float:
    """How long a reload builder in the idle scheduling class may get less than 5% of a
    core before it is started again at ``reload_nice()``: ``$ATP_BRIDGE_RELOAD_IDLE_S``
    (0: never the idle class), else ``RELOAD_IDLE_S``."""
    raw = os.environ.get(IDLE_ENV)
    if raw is not None:
        try:
            return max(0.0, float(raw))
        except ValueError:
            log.warning("%s=%r is not a number of seconds; using %s", IDLE_ENV, raw, RELOAD_IDLE_S)
    return RELOAD_IDLE_S


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
    # where the shared table files live; None: $ATP_BRIDGE_TABLE_DIR, else a private temp dir
    table_dir = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1))

    @validates("encoding")
    def _known_encoding(self, value: str, **kwargs) -> None:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValidationError(f"unknown encoding {value!r}") from None


class CsvAdapter(Adapter):
    """ATP from a CSV file, answered from a shared mapped table, reloaded when the file changes.

    The first load happens in the constructor; its failure is recorded (health
    turns false, ``lookup`` raises :class:`AdapterUnavailable`), not raised. A
    daemon thread (``atp-bridge-csv-<name>``, one per process: build adapters
    after a fork) stats the file every ``reload_interval_s``; a changed file is
    read once its stat held still for one more poll, and swapped in only if it
    parsed and did not change during the read. A bad file keeps the previous
    table and marks the adapter unhealthy until a good one loads.
    ``reload_interval_s=None`` disables polling (use :meth:`reload_now`).
    ``table_dir``: where the table files are kept (:func:`~adapters.csv_build.table_dir`).
    """

    options_schema = CsvOptionsSchema
    blocking = False
    data_file_options = ("path",)  # polled: a file that appears after start is loaded

    def __init__(self, name: str, *, path: str, delimiter: str = ",",
                 columns: Mapping[str, str] | None = None, reload_interval_s: float | None = 2.0,
                 encoding: str = "utf-8-sig", table_dir: str | None = None,
                 locations: Sequence[str] = ("*",), match_on: str = "external_identifier"):
        super().__init__(name, locations=locations, match_on=match_on)
        columns = {**DEFAULT_COLUMNS, **(columns or {})}
        if set(columns) != set(DEFAULT_COLUMNS):
            raise ValueError(f"columns: unknown keys {sorted(set(columns) - set(DEFAULT_COLUMNS))}")
        if len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self.path = os.fspath(path)
        self.delimiter, self.columns, self.encoding = delimiter, columns, encoding
        self.reload_interval_s, self.table_dir = reload_interval_s, table_dir
        # (table, loaded_at, last_error), replaced as a whole so readers see one state
        self._state: tuple[MappedTable | None, float | None, str | None] = (None, None, None)
        self._seen: tuple | None = None  # stat signature of the version last read
        self._retired: list[MappedTable] = []  # swapped out, still held by a request
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
        path = os.path.normpath(resolve_file(spec.base_dir, options.pop("path")))
        if options.get("table_dir"):
            options["table_dir"] = os.path.normpath(resolve_file(spec.base_dir, options["table_dir"]))
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
            "table_file": table.path if table else None,
        }
        if table is not None and error is None:
            return Health(True, "ok", info)
        return Health(False, error or f"{self.path}: not loaded yet", info)

    def reload_now(self, in_subprocess: bool = True) -> bool:
        """Bring the table up to date with the file now; True when a new one was swapped in.

        A table already built for this version of the file (by another worker,
        or before this worker restarted) is mapped; otherwise it is built, in a
        child process unless ``in_subprocess`` is false (or no child process can
        be started), so this thread does not compete for the GIL with requests.
        """
        with self._load_lock:
            started = time.perf_counter()
            table, error, sig, how = self._load(in_subprocess)
            if sig == CHANGED:
                log.info("csv adapter %r: %s changed while being read; retrying later",
                         self.name, self.path)
                return False
            self._seen = sig
            old, loaded_at, _ = self._state
            if table is None:
                metrics.CSV_RELOADS.labels(self.name, "error").inc()
                if old is None and sig is not None:  # a restarted worker: serve what the others serve
                    key = source_key(self.path, self.encoding, self.delimiter, self.columns)
                    old = previous_table(self._dir, key) if self._dir else None
                    loaded_at = time.time() if old is not None else None
                self._state = (old, loaded_at, error)
                log.warning("csv adapter %r: %s; %s", self.name, error,
                            "keeping the previous data" if old else "no data to serve")
                return False
            if old is not None and old.path == table.path and loaded_at is not None:
                self._state = (old, loaded_at, None)  # the same file again (e.g. touched back)
                return False
            self._state = (table, time.time(), None)
            if old is not None:
                self._retired.append(old)  # unmapped once no request holds it
                del old
            metrics.CSV_RELOADS.labels(self.name, "ok").inc()
            metrics.CSV_ROWS.labels(self.name).set(table.rows)
            metrics.CSV_MTIME.labels(self.name).set(sig[0] / 1e9)  # sig: the stat read, st_mtime_ns first
            log.info("csv adapter %r: %s %s: %d rows, %d products x %d locations (%s) in %.2fs%s",
                     self.name, "built the table of" if how == "built" else
                     "mapped the existing table of", self.path, table.rows, table.products,
                     table.locations, table.layout, time.perf_counter() - started,
                     f" (builder: {self._priority})" if how == "built" else "")
        self.unmap_retired()
        return True

    def unmap_retired(self) -> int:
        """Unmap the tables swapped out that no request holds any more (only the list of
        them does), each on the gevent hub's thread pool: unmapping a big table, and for
        the last worker freeing its deleted file's pages, takes tens of milliseconds
        (60 ms for 385 MB on tmpfs) that would stop every request of this worker. The
        others wait for the next poll. Returns how many are left."""
        with self._load_lock:  # one caller at a time walks the list
            k = 0
            while k < len(self._retired):
                if sys.getrefcount(self._retired[k]) > 2:  # the list's and the argument's
                    k += 1
                    continue
                off_hub(self._retired.pop(k).close)
            return len(self._retired)

    _dir: str | None = None
    _priority = "normal"  # how the last builder ran (its log line says)

    def _load(self, in_subprocess: bool) -> tuple:
        """``(table, error, stat signature read, "built" | "mapped")``."""
        sig = _path_signature(self.path)
        if sig is None:
            return None, f"{self.path}: file not found", None, None
        try:
            self._dir = directory = table_dir(self.table_dir)
        except TableDirError as e:
            return None, str(e), sig, None
        key = source_key(self.path, self.encoding, self.delimiter, self.columns)
        table = open_table(directory, key, self.path, sig)
        waited = time.monotonic()
        while table is None and build_running(directory, key) and time.monotonic() - waited < 900:
            time.sleep(0.05)  # another worker's builder is at it: no second one (a cooperative sleep)
            table = open_table(directory, key, self.path, sig)
        if table is not None:
            return table, None, sig, "mapped"
        args = (directory, self.path, self.encoding, self.delimiter, self.columns)
        result = None
        if in_subprocess:
            lock = try_lock(directory, key)
            if lock is None:  # another worker took it since build_running(): wait for its table
                return self._load(in_subprocess)
            reloading = self._state[0] is not None  # beside requests: the builder yields the CPU
            try:
                result = build_in_subprocess(
                    *args, lock_fd=lock, nice=reload_nice() if reloading else 0,
                    idle_for=reload_idle_s() if reloading else None)
            except Exception as e:  # no child process to be had: build here, slower for requests
                log.warning("csv adapter %r: %s; building the table in this process", self.name, e)
            finally:
                os.close(lock)
        if result is None:
            result = build(*args)
        self._priority = result.get("priority", "normal, in this process")
        if result.get("changed"):
            return None, None, CHANGED, None
        read = tuple(result["sig"]) if result.get("sig") else None
        if "error" in result:
            return None, result["error"], read, None
        table = open_table(directory, key, self.path, read)
        if table is None:  # replaced again since the build
            return None, None, CHANGED, None
        return table, None, read, "built" if result["built"] else "mapped"

    def _poll(self) -> None:
        poll_settled(self._stop, self.reload_interval_s, self._signature, lambda: self._seen,
                     self.reload_now, log, f"csv adapter {self.name!r}: reload of {self.path}")

    def _signature(self):
        if self._retired:  # a request held the old table at the swap: try again each poll
            self.unmap_retired()
        return _path_signature(self.path)

    def close(self) -> None:
        """Stop the polling thread (waits for a reload in progress)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def __repr__(self) -> str:
        return f"CsvAdapter({self.name!r}, path={self.path!r})"
