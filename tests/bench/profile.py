"""Where a worker's time goes under load: ``py-spy record --gil`` and a summary of its stacks."""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

from tests.serve import ROOT

# frames every stack sits under (thread start-up, the worker's boot): they say nothing
# about where the time goes, so the inclusive table leaves them out
_PLUMBING = ("(threading.py)", "(concurrent/futures/thread.py)", "(<frozen runpy>)", "(click/core.py)",
             "(atp_bridge/cli.py)", "(atp_bridge/server.py)", "(gunicorn/arbiter.py)",
             "(gunicorn/app/base.py)", "(gunicorn/workers/base.py)")
# a sample goes to the category of its innermost frame that matches one (so work the
# view does through Werkzeug counts as Flask / Werkzeug, and the access middleware, which
# Flask.__call__ calls, gets only its own work)
CATEGORIES = (
    ("gunicorn's own access line (gunicorn.access)", ("(gunicorn/glogging.py",)),
    ("bridge and adapters: routes, CSV lookup, finalize", ("(atp_bridge/bridge.py",
                                                          "(atp_bridge/planner.py", "(adapters/")),
    ("orjson.dumps + Response (json_response)", ("json_response (",)),
    ("view: orjson.loads, parse_request, rows", ("availabilities (atp_bridge/views.py",
                                                 "(atp_bridge/schemas.py")),
    ("Flask / Werkzeug: context, routing, request body, response", ("(flask/", "(werkzeug/")),
    ("access middleware: request id, metrics, JSON access line", ("(atp_bridge/access.py",)),
    ("gunicorn: HTTP parsing, socket I/O, accept loop", ("(gunicorn/",)),
)
HINT = "py-spy not found: pip install py-spy (it needs ptrace: root or CAP_SYS_PTRACE)"


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> Path:
    """Sample ``pid`` for ``seconds``; only samples holding the GIL (the worker's CPU-bound work)."""
    binary = shutil.which("py-spy")
    if binary is None:
        raise SystemExit(HINT)
    subprocess.run([binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                    "--rate", str(rate), "--gil", "--format", "raw", "--output", str(out)],
                   check=True, capture_output=True, timeout=seconds + 60)
    return out


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
    return frames, int(count)


def _short(frame: str) -> str:
    """``name (path/to/mod.py:12)`` -> ``name (mod.py:12)``; site-packages paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def _function(frame: str) -> str:
    """``name (mod.py:12)`` -> ``name (mod.py)``."""
    short = _short(frame)
    head, sep, _ = short.rpartition(":")
    return head + ")" if sep else short


def category(frames: list[str]) -> str:
    """The category of the innermost frame that matches one (``frames`` run outermost first)."""
    for frame in reversed(frames):
        short = _short(frame)
        for name, marks in CATEGORIES:
            if any(m in short for m in marks):
                return name
    return "other"


def summarize(raw: Path, top: int = 15) -> dict:
    """Categories, inclusive time by function and self time by line, as % of GIL-holding samples."""
    self_t, incl, cats = Counter(), Counter(), Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, n = _frames(line)
        if not frames:
            continue
        total += n
        self_t[_short(frames[-1])] += n
        cats[category(frames)] += n
        for fn in {fn for f in frames if not (fn := _function(f)).endswith(_PLUMBING)}:
            incl[fn] += n
    pct = (lambda c: [(k, 100 * v / total) for k, v in c.most_common(top)]) if total else (lambda c: [])
    return {"samples": total, "self": pct(self_t), "inclusive": pct(incl),
            "categories": [(k, 100 * v / total) for k, v in cats.most_common()] if total else []}
