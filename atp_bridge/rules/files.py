"""Rule files (safety stock, bundles): CSV read with line-numbered errors, watched for changes.

A rule file is small next to a stock file (at most some hundred thousand
rows), so it is parsed in the worker. Under the gevent worker the parse runs
on the hub's thread pool (a real thread), so the requests this worker is
serving keep their turns while it runs, and the new rules are swapped in as
one object: a request sees the old rules or the new, never a mix.
"""
from __future__ import annotations

import csv
import logging
import os
import threading
from collections.abc import Callable, Sequence

from atp_bridge.errors import AtpBridgeError
from atp_bridge.filewatch import off_hub, poll_settled

log = logging.getLogger("atp_bridge.rules")

MAX_REPORTED = 20  # bad rows quoted in an error; the rest are only counted


class RuleFileError(AtpBridgeError):
    """A rule file cannot be used; the message names the file, line and problem."""


def read_rows(path: str, columns: Sequence[str]) -> list[tuple[int, tuple[str, ...]]]:
    """``(line, values)`` per data row of the CSV file at ``path``, in ``columns`` order.

    The first row is the header and must name every column (more columns are
    ignored; names are matched without surrounding blanks, any case). Blank
    lines are skipped; values are stripped.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise RuleFileError(f"{path}: empty file: expected a header row "
                                    f"({','.join(columns)})")
            names = [h.strip().lower() for h in header]
            missing = [c for c in columns if c not in names]
            if missing:
                raise RuleFileError(f"{path}: line 1: the header must name the columns "
                                    f"{','.join(columns)} (missing: {', '.join(missing)})")
            idx = [names.index(c) for c in columns]
            width = max(idx) + 1
            rows = []
            for row in reader:
                if not row or not any(v.strip() for v in row):
                    continue
                if len(row) < width:
                    raise RuleFileError(f"{path}: line {reader.line_num}: expected {len(header)} "
                                        f"columns, got {len(row)}")
                rows.append((reader.line_num, tuple(row[i].strip() for i in idx)))
            return rows
    except OSError as e:
        raise RuleFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise RuleFileError(f"{path}: not a readable UTF-8 CSV file: {e}") from None


def number(text: str, *, integer: bool = False, positive: bool = False) -> float | int:
    """``text`` as a number >= 0 (> 0 with ``positive``; whole with ``integer``)."""
    value = float(text)  # ValueError for junk: the caller names the line
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    if value < 0 or (positive and value == 0):
        raise ValueError("must be greater than 0" if positive else "must not be negative")
    if integer:
        if value != int(value):
            raise ValueError("must be a whole number")
        return int(value)
    return value


def raise_bad_rows(path: str, bad: list[str]) -> None:
    """Raise one RuleFileError quoting the first :data:`MAX_REPORTED` bad rows."""
    if bad:
        more = f" (and {len(bad) - MAX_REPORTED} more)" if len(bad) > MAX_REPORTED else ""
        raise RuleFileError(f"{path}: {len(bad)} bad row(s){more}: " + "; ".join(bad[:MAX_REPORTED]))


def signature(path: str):
    """What tells one version of a file from another; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class WatchedFile:
    """Re-reads a rule file when it changes and hands the parsed value to ``on_change``.

    ``load(path)`` parses (raising RuleFileError); the first load is the
    caller's (at config time). A daemon thread stats the file every
    ``interval_s``; a changed file is read once its stat held still for one
    more poll. A file that fails to parse, or vanished, keeps the previous
    rules and logs one warning per bad version.
    """

    def __init__(self, what: str, path: str, load: Callable[[str], object],
                 on_change: Callable[[object], None], interval_s: float):
        self.what, self.path, self.load, self.on_change = what, path, load, on_change
        self.interval_s = interval_s
        self.seen = signature(path)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s and self._thread is None:
            self._thread = threading.Thread(target=self._poll, daemon=True,
                                            name=f"atp-bridge-rules-{self.what}")
            self._thread.start()

    def check(self) -> bool:
        """Read the file now if its signature differs from the last read; True when swapped."""
        sig = signature(self.path)
        if sig == self.seen:
            return False
        self.seen = sig
        if sig is None:
            self.error = f"{self.path}: file is gone"
            log.warning("%s: %s; keeping the rules last read", self.what, self.error)
            return False
        try:
            value = off_hub(self.load, self.path)
        except RuleFileError as e:
            self.error = str(e)
            log.warning("%s: %s; keeping the rules last read", self.what, e)
            return False
        self.on_change(value)
        self.error = None
        log.info("%s: reloaded %s", self.what, self.path)
        return True

    def _poll(self) -> None:
        poll_settled(self._stop, self.interval_s, lambda: signature(self.path), lambda: self.seen,
                     self.check, log, f"{self.what}: reload of {self.path}")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
