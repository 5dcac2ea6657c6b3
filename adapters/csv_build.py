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
atp_bridge.adapters.csv_build``, :func:`build_in_subprocess`): the parse is
CPU work that would otherwise hold the worker's GIL for seconds.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


STARVED_SHARE = 0.05  # of one core: less than this, over the window, is starving
CHECK_S = 1.0  # how often a waiting worker looks at its builder


class Starved(Exception):
    """The idle-class builder got less than ``STARVED_SHARE`` of a core for a window."""


def build_in_subprocess(directory: str, path: str, encoding: str, delimiter: str, columns,
                        timeout: float = 900.0, nice: int = 0, lock_fd: int | None = None,
                        idle_for: float | None = None) -> dict:
    """:func:`build` in a child Python process; same result, plus ``"priority"`` (how the
    child ran). Raises ``RuntimeError`` if the child fails or outlives ``timeout``. The
    child gets no ``PROMETHEUS_MULTIPROC_DIR`` (it is not a worker) and this package on
    its path.

    A reload beside serving workers (``nice`` > 0 or ``idle_for``) parses on one
    core at niceness ``nice``. With ``idle_for`` it first runs in Linux's idle
    scheduling class (``SCHED_IDLE``): it gets only CPU time no worker wants, and a
    worker that wakes takes the core from it at once. A builder that got less than
    ``STARVED_SHARE`` of a core over the last ``idle_for`` seconds (its CPU time, from
    /proc: the workers leave no CPU idle) is killed and the build runs again at
    ``nice``, which still yields to the workers but gets a share (an unprivileged
    process cannot leave the idle class): the result then says ``"starved_s"``."""
    idle = idle_for is not None and idle_for > 0 and hasattr(os, "SCHED_IDLE")
    args = [nice, idle or nice > 0, lock_fd, directory, path, encoding, delimiter, dict(columns)]
    if idle:
        try:
            return _run_builder([True, *args], timeout, lock_fd, starved_after=idle_for)
        except Starved:
            return {**_run_builder([False, *args], timeout, lock_fd), "starved_s": idle_for}
    return _run_builder([False, *args], timeout, lock_fd)


def _run_builder(args: list, timeout: float, lock_fd: int | None,
                 starved_after: float | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    import atp_bridge

    root = str(Path(atp_bridge.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "atp_bridge.adapters.csv_build"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, pass_fds=() if lock_fd is None else (lock_fd,))
    _lower_priority(proc.pid, idle=args[0], nice=args[1])  # before its interpreter has started up
    started = time.monotonic()
    seen = [(started, 0.0)]  # (when, the child's CPU seconds then)
    payload: bytes | None = json.dumps(args).encode()
    while True:
        try:
            out, err = proc.communicate(payload, timeout=CHECK_S)
            break
        except subprocess.TimeoutExpired:
            payload = None  # sent: a retry only goes on reading
        now = time.monotonic()
        if now - started > timeout:
            _kill(proc)
            raise RuntimeError(f"csv table builder still running after {timeout:.0f} s")
        if starved_after:
            seen.append((now, _cpu_seconds(proc.pid)))
            while len(seen) > 1 and now - seen[1][0] >= starved_after:
                seen.pop(0)  # the oldest sample at least a window back stays first
            (then, cpu_then), cpu_now = seen[0], seen[-1][1]
            if now - then >= starved_after and cpu_now - cpu_then < STARVED_SHARE * (now - then):
                _kill(proc)
                raise Starved()
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"csv table builder exited {proc.returncode}: {tail[0]}")
    return json.loads(out)


def _kill(proc) -> None:
    proc.kill()  # its temporary file is removed by the next build (under the lock)
    proc.communicate()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads so far (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _lower_priority(pid: int, idle: bool, nice: int) -> str:
    """Give process ``pid`` (0: this one) niceness ``nice`` and, if ``idle``, the idle
    scheduling class; what it has now: ``"idle"``, ``"nice N"`` or ``"normal"``."""
    try:
        if nice > 0:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        if idle:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # exited already, or no such call here: as it is
        pass
    try:
        if hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(pid) == os.SCHED_IDLE:
            return "idle"
        now = os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return "normal"
    return f"nice {now}" if now > 0 else "normal"


if __name__ == "__main__":  # the child of build_in_subprocess
    _idle, _nice, _reload, _lock, *_args = json.loads(sys.stdin.read())
    _priority = _lower_priority(0, _idle, _nice)  # the parent did; this covers a lost race
    # a reload (beside serving workers) parses on one core: the others stay theirs
    _result = build(*_args, processes=1 if _reload else None, lock_fd=_lock)
    sys.stdout.write(json.dumps({**_result, "priority": _priority}))
