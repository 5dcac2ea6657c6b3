"""CSV adapter: ATP from a ``product,location,atp`` file, held in memory.

The whole file is parsed into a compact, immutable
:class:`~adapters.csv_table.CsvTable`, so a million rows cost tens of
megabytes, not hundreds. A daemon thread polls the file and swaps in a new
table only when a complete, valid file was read, parsed in a child process so
the reload never holds the serving worker's GIL; until then requests keep the
previous table. Writers should still prefer writing a temporary file and
renaming it over the old one (atomic on POSIX).
"""
from __future__ import annotations

import codecs
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from atp_bridge.adapters.base import Adapter, Batch, Health
from atp_bridge.adapters.csv_table import (CHANGED, DEFAULT_COLUMNS, CsvTable, _path_signature, read_file,
                                read_file_in_subprocess)
from atp_bridge import metrics
from atp_bridge.config_types import resolve_file
from atp_bridge.errors import AdapterUnavailable

log = logging.getLogger("atp_bridge.adapters.csv")


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
    data_file_options = ("path",)  # polled: a file that appears after start is loaded

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
        path = os.path.normpath(resolve_file(spec.base_dir, options.pop("path")))
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

    def reload_now(self, in_subprocess: bool = False) -> bool:
        """Read the file now and swap the new table in; True when it was swapped.

        ``in_subprocess``: parse in a child process (the background reloads do),
        so this thread does not compete for the GIL with requests for seconds.
        """
        with self._load_lock:
            started = time.perf_counter()
            args = (self.path, self.encoding, self.delimiter, self.columns)
            if in_subprocess:
                try:
                    table, error, sig = read_file_in_subprocess(*args)
                except Exception as e:  # no child process to be had: read here, slower for requests
                    log.warning("csv adapter %r: %s; reading in this process", self.name, e)
                    table, error, sig = read_file(*args)
            else:
                table, error, sig = read_file(*args)
            if sig == CHANGED:
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
            metrics.CSV_MTIME.labels(self.name).set(sig[0] / 1e9)  # sig: the stat read, st_mtime_ns first
            log.info("csv adapter %r: loaded %s: %d rows, %d products x %d locations (%s) in %.2fs",
                     self.name, self.path, table.rows, table.products, table.locations,
                     table.layout, time.perf_counter() - started)
            return True

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
                    self.reload_now(in_subprocess=True)
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
