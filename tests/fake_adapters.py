"""Adapters for the tests, registered through a real entry point (see conftest).

``static`` answers from a table in its YAML; ``failing`` injects the faults a
real source has: raise, sleep past the deadline, answer the wrong shape.
"""
from __future__ import annotations

import threading
import time

from marshmallow import RAISE, Schema, fields

from atp_bridge.adapters.base import Adapter, Batch

CALLS: list[tuple[str, Batch]] = []
SPANS: list[tuple[str, float, float]] = []  # (adapter, start, end) of each "sleep" lookup
_lock = threading.Lock()


class StaticSchema(Schema):
    class Meta:
        unknown = RAISE

    # {location: {product: atp}}
    values = fields.Dict(keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.Raw()),
                         load_default=dict)
    blocking = fields.Boolean(load_default=True)


class StaticAdapter(Adapter):
    """Answers from ``values``; records every batch in CALLS."""

    options_schema = StaticSchema

    def __init__(self, name, *, values=None, blocking=True, **kw):
        super().__init__(name, **kw)
        self.values = values or {}
        self.blocking = blocking

    def lookup(self, batch):
        with _lock:
            CALLS.append((self.name, batch))
        return {(p, loc): self.values[loc][p] for p, loc in batch.pairs()
                if p in self.values.get(loc, {})}


class FailingSchema(Schema):
    class Meta:
        unknown = RAISE

    mode = fields.String(load_default="raise")  # raise | sleep | short | bug | boot
    sleep_s = fields.Float(load_default=1.0)
    healthy = fields.Boolean(load_default=True)


class FailingAdapter(Adapter):
    options_schema = FailingSchema

    def __init__(self, name, *, mode="raise", sleep_s=1.0, healthy=True, **kw):
        super().__init__(name, **kw)
        if mode == "boot":  # valid config, but the source cannot be set up
            raise RuntimeError("cannot start on purpose")
        self.mode, self.sleep_s, self.healthy = mode, sleep_s, healthy

    def lookup(self, batch):
        with _lock:
            CALLS.append((self.name, batch))
        if self.mode == "raise":
            raise ConnectionError("ERP said no")
        if self.mode == "sleep":
            started = time.monotonic()
            time.sleep(self.sleep_s)
            with _lock:
                SPANS.append((self.name, started, time.monotonic()))
            return [1] * len(batch)
        if self.mode == "bug":
            return {}["missing"]
        return [1]  # "short": wrong number of values

    def health(self):
        from atp_bridge.adapters.base import Health
        return Health(self.healthy, "ok" if self.healthy else "down on purpose")
