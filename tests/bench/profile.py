"""Where a worker's time goes under load: ``py-spy record --gil`` and a summary of its stacks."""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

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
    for marker in ("site-packages/", "/work/main/", "/atp_bridge/", "/adapters/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def _function(frame: str) -> str:
    return _short(frame).rsplit(":", 1)[0] + (")" if ":" in _short(frame) else "")


def summarize(raw: Path, top: int = 12) -> dict:
    """Self time by line and inclusive time by function, as % of GIL-holding samples."""
    self_t, incl = Counter(), Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, n = _frames(line)
        if not frames:
            continue
        total += n
        self_t[_short(frames[-1])] += n
        for fn in {_function(f) for f in frames}:
            incl[fn] += n
    pct = (lambda c: [(k, 100 * v / total) for k, v in c.most_common(top)]) if total else (lambda c: [])
    return {"samples": total, "self": pct(self_t), "inclusive": pct(incl)}
