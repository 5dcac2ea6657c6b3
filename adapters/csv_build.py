"""Building a CSV's shared table file once per machine, and finding it again.

A table file is named after its source: a key from the CSV's absolute path
and parsing options, and a hash of the source's stat signature (size,
mtime_ns, ctime_ns, inode, device). Its header repeats that signature and a
hash of the source's first and last 64 KiB, and carries a hash of the whole
content; :func:`open_table` maps a file only when all of that matches the
source as it is now, so a leftover of a crashed process or a table of another
CSV is never served: it is rebuilt instead.

:func:`build` runs under an exclusive ``flock`` per key, so of all the workers
(and servers) that find the table missing, one parses the CSV and the others
wait and then map its result. It writes a temporary file and renames it into
place (readers see a complete file or none), then deletes the key's older
tables: a worker still mapping one keeps its pages until it lets go. A broken
CSV leaves a small ``.error`` file, so the other workers report the same error
without parsing the file again.

The serving workers call it in a child process (``python -m
atp_bridge.adapters.csv_build``, started by
:func:`~adapters.csv_spawn.build_in_subprocess`): the parse is CPU work that
would otherwise hold the worker's GIL for seconds.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import sys
import tempfile
import threading
import time

from atp_bridge.adapters import csv_shared
from atp_bridge.adapters.csv_table import _path_signature, _signature, parse_rows
from atp_bridge.adapters.csv_write import set_header, write_dense, write_sparse, write_table

ENV_DIR = "ATP_BRIDGE_TABLE_DIR"
SAMPLE = 64 << 10


class TableDirError(OSError):
    """The table directory cannot be used; the message says which and why."""


def table_dir(configured: str | None = None) -> str:
    """The directory for table files, created if missing: ``configured``, else
    ``$ATP_BRIDGE_TABLE_DIR``, else ``<tmp>/atp-bridge-tables-<uid>`` (mode 0700,
    which must be this user's and not writable by others)."""
    default = not (configured or os.environ.get(ENV_DIR))
    path = configured or os.environ.get(ENV_DIR) or os.path.join(
        tempfile.gettempdir(), f"atp-bridge-tables-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError as e:
        raise TableDirError(f"table_dir {path}: cannot create: {e.strerror or e}") from None
    if default and (st.st_uid != os.getuid() or st.st_mode & 0o022):
        raise TableDirError(f"table_dir {path}: not private to this user (owner {st.st_uid}, "
                            f"mode {st.st_mode & 0o777:o}); set table_dir or {ENV_DIR}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise TableDirError(f"table_dir {path}: not writable by this user")
    return path


def source_key(path: str, encoding: str, delimiter: str, columns) -> str:
    """What a table depends on besides the content: the file and how it is parsed."""
    ident = [os.path.abspath(path), encoding, delimiter, dict(sorted(columns.items())),
             csv_shared.VERSION]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]


def table_path(directory: str, key: str, sig) -> str:
    digest = hashlib.sha256(json.dumps(list(sig)).encode()).hexdigest()[:16]
    return os.path.join(directory, f"csv-{key}-{digest}.table")


def sample_hash(path: str) -> str | None:
    """Hash of the first and last 64 KiB and the size: cheap enough for every map."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h = hashlib.blake2b(f.read(SAMPLE), digest_size=16)
            f.seek(max(0, size - SAMPLE))
            h.update(f.read(SAMPLE))
            h.update(size.to_bytes(8, "little"))
            return h.hexdigest()
    except OSError:
        return None


def open_table(directory: str, key: str, path: str, sig) -> csv_shared.MappedTable | None:
    """The mapped table of ``path`` at stat signature ``sig``, or None if there is
    no complete one that matches the source as it is now."""
    try:
        table = csv_shared.MappedTable(table_path(directory, key, sig))
    except (OSError, ValueError):  # missing, truncated, another format: build it
        return None
    h = table.header
    if h.get("key") != key or h.get("source_sig") != list(sig) or h.get("sample") != sample_hash(path):
        return None
    return table


def previous_table(directory: str, key: str) -> csv_shared.MappedTable | None:
    """The newest complete table of ``key`` whatever its source version: what the
    other workers keep serving while the current file is broken."""
    tables = []
    for name in glob.glob(os.path.join(directory, f"csv-{key}-*.table")):
        try:
            table = csv_shared.MappedTable(name)
        except (OSError, ValueError):
            continue
        if table.header.get("key") == key:
            tables.append((table.header.get("built_at", 0), name, table))
    return max(tables, key=lambda t: t[:2])[2] if tables else None


def build_running(directory: str, key: str) -> bool:
    """True while a process holds ``key``'s build lock (a builder is parsing)."""
    try:
        fd = os.open(os.path.join(directory, f"csv-{key}.lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the lock, if we got it
    return False


def try_lock(directory: str, key: str) -> int | None:
    """An fd holding ``key``'s build lock, or None if another process holds it. A worker
    takes it before it starts a builder (who inherits it), so the other workers see a
    build running from that moment on, not only once the child has started."""
    fd = os.open(os.path.join(directory, f"csv-{key}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def build(directory: str, path: str, encoding: str, delimiter: str, columns,
          processes: int | None = None, lock_fd: int | None = None) -> dict:
    """Make sure the table of ``path`` as it is now exists; returns ``{"table", "sig",
    "built"}``, ``{"error", "sig"}`` for a bad file, or ``{"changed": True}``.
    ``lock_fd``: the build lock, already held (:func:`try_lock`)."""
    key = source_key(path, encoding, delimiter, columns)
    held = open(lock_fd, "a", closefd=False) if lock_fd is not None else None
    with held or open(os.path.join(directory, f"csv-{key}.lock"), "a") as lock:
        if held is None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        sig = _path_signature(path)
        if sig is None:
            return {"error": f"{path}: file not found", "sig": None}
        target = table_path(directory, key, sig)
        if open_table(directory, key, path, sig) is not None:
            return {"table": target, "sig": list(sig), "built": False}
        error_file = target[:-len(".table")] + ".error"
        try:
            with open(error_file) as f:
                known = json.load(f)
            if known.get("sample") == sample_hash(path):
                return {"error": known["error"], "sig": list(sig)}
        except (OSError, ValueError):
            pass
        for leftover in glob.glob(os.path.join(directory, f"csv-{key}-*.tmp*")):
            os.unlink(leftover)  # a crashed build's; nobody else builds this key: we hold the lock
        started = time.perf_counter()
        tmp = f"{target}.tmp{os.getpid()}"
        meta = {"key": key, "source": os.path.abspath(path), "source_sig": list(sig)}
        result = _parse(path, encoding, delimiter, columns, processes, tmp, meta)
        if result.get("changed"):
            if os.path.exists(tmp):
                os.unlink(tmp)
            return result
        mine = [target, error_file] if "error" in result else [target]
        if "error" in result:
            with open(tmp, "w") as f:
                json.dump({"error": result["error"], "sample": result["sample"]}, f)
            os.replace(tmp, error_file)
        else:
            os.replace(tmp, target)
        for old in glob.glob(os.path.join(directory, f"csv-{key}-*")):
            # after an error the older tables stay: workers that restart serve the last good one
            if old not in mine and ("error" not in result or not old.endswith(".table")):
                os.unlink(old)  # mapped elsewhere? its pages stay until that worker lets go
        out = {"sig": list(sig), "seconds": round(time.perf_counter() - started, 3)}
        return {**out, "error": result["error"]} if "error" in result else {
            **out, "table": target, "built": True, "parser": result["parser"]}


def _parse(path, encoding, delimiter, columns, processes, tmp, meta) -> dict:
    """Write the table of ``path`` to ``tmp`` (fast path, else the csv module) and
    return its hashes and parser, or an error, or ``{"changed": True}``."""
    import numpy as np

    from atp_bridge.adapters.csv_fast import Declined, scan

    try:
        f = open(path, "rb")
    except OSError as e:
        return {"error": f"{path}: cannot open: {e.strerror or e}", "sample": None}
    with f:
        before = _signature(os.fstat(f.fileno()))
        digest = hashlib.blake2b(digest_size=16)
        hasher = threading.Thread(target=_hash_into, args=(f.fileno(), digest), daemon=True)
        hasher.start()  # hashlib lets go of the GIL: this runs beside the parse
        out: dict = {"sample": sample_hash(path), "parser": "fast"}
        # the real content hash is set once the hasher is done; this one has its length
        head = {**meta, "sample": out["sample"], "content_hash": "0" * 32, "parser": "fast"}
        try:
            found = scan(path, encoding, delimiter, columns, processes)
            if 4 * found.rows >= len(found.products) * len(found.locations):
                write_dense(tmp, head, found.products, found.locations, found.rows, found.whole,
                            lambda table, offset, dtype: found.fill_grid(table, offset, dtype))
            else:  # sparse: each product's run written in place, then sorted a slice at a time
                write_sparse(tmp, head, found.products, found.locations, found.rows, found.whole,
                             found.product_counts(), found.fill_runs)
        except Declined:
            out["parser"] = head["parser"] = "csv"
            try:
                with open(path, encoding=encoding, newline="") as text:
                    products, locations, pidx, lidx, vals = parse_rows(
                        text, delimiter=delimiter, columns=columns)
                write_table(tmp, head, list(products), list(locations), np.frombuffer(pidx, np.uint32),
                            np.frombuffer(lidx, np.uint32), np.frombuffer(vals, np.float64))
            except UnicodeDecodeError as e:
                out = {"error": f"{path}: not valid {encoding} text: {e.reason}", "sample": out["sample"]}
            except (ValueError, OSError) as e:
                out = {"error": f"{path}: {e}", "sample": out["sample"]}
        hasher.join()
        out["content_hash"] = digest.hexdigest()
    if _path_signature(path) != before:
        return {"changed": True}
    if "error" not in out:
        set_header(tmp, content_hash=out["content_hash"], built_at=time.time())
    return out


def _hash_into(fd: int, digest) -> None:
    offset = 0  # pread: no file offset shared with anyone
    try:
        while block := os.pread(fd, 1 << 20, offset):
            digest.update(block)
            offset += len(block)
    except OSError:
        pass


if __name__ == "__main__":  # the child of build_in_subprocess
    _idle, _nice, _reload, _lock, *_args = json.loads(sys.stdin.read())
    from atp_bridge.adapters.csv_spawn import lower_priority

    _priority = lower_priority(0, _idle, _nice)  # the parent did; this covers a lost race
    # a reload (beside serving workers) parses on one core: the others stay theirs
    _result = build(*_args, processes=1 if _reload else None, lock_fd=_lock)
    sys.stdout.write(json.dumps({**_result, "priority": _priority}))
    sys.stdout.flush()
    # no interpreter teardown: in the idle class beside busy workers it took up to seconds,
    # and the worker that started this child swaps the new table in once it has exited
    os._exit(0)
