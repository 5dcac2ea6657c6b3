"""Running :func:`adapters.csv_build.build` in a child process that yields the CPU to requests.

A reload's table is built beside serving workers. The child (``python -m
atp_bridge.adapters.csv_build``) gets Linux's idle scheduling class and a
niceness from the worker that starts it, right after the spawn, before its
interpreter has started up; while it runs, the worker (its greenlet: the
others go on serving) watches its CPU time, and starts it again at the
niceness alone if the idle class starved it.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path


log = logging.getLogger("atp_bridge.adapters.csv")
STARVED_SHARE = 0.05  # of one core: less than this, over the window, is starving
CHECK_S = 1.0  # how often a waiting worker looks at its builder


class Starved(Exception):
    """The idle-class builder got less than ``STARVED_SHARE`` of a core for a window."""


def build_in_subprocess(directory: str, path: str, encoding: str, delimiter: str, columns,
                        timeout: float = 900.0, nice: int = 0, lock_fd: int | None = None,
                        idle_for: float | None = None) -> dict:
    """:func:`~adapters.csv_build.build` in a child Python process; same result, plus
    ``"priority"`` (how the child ran). Raises ``RuntimeError`` if the child fails or
    outlives ``timeout``. The child gets no ``PROMETHEUS_MULTIPROC_DIR`` (it is not a
    worker) and this package on its path.

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
            log.warning("csv table builder of %s: under %d%% of a core for %g s in the idle "
                        "scheduling class (the workers leave no CPU idle); starting it again "
                        "at nice %d", path, round(100 * STARVED_SHARE), idle_for, nice)
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
    lower_priority(proc.pid, idle=args[0], nice=args[1])  # before its interpreter has started up
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


def lower_priority(pid: int, idle: bool, nice: int) -> str:
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
