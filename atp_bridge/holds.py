"""Zero-ATP holds: "the warehouse just said it has none of this, stop promising it".

When the warehouse rejects items with ``no_inventory`` through the
Fulfillment Provider client, :meth:`HoldStore.record` writes a hold per
(location, product_id) into Redis with a TTL. Every worker keeps the live holds
in memory, refreshed by a background thread every ``refresh_s``, so the webhook
honours them without any Redis I/O on the request path: a held pair answers
``atp: 0`` whatever the adapters say, until the hold expires.

All holds live in one sorted set (member ``location\\x1fproduct_id``, score =
expiry as a Unix timestamp): recording is one pipeline, reading is one
``ZRANGEBYSCORE``, expired members are trimmed on write.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from atp_bridge.errors import AtpBridgeError

log = logging.getLogger("atp_bridge.holds")

SEP = "\x1f"


class HoldError(AtpBridgeError):
    """Redis could not record or read holds."""


class HoldStore:
    """Record and read zero-ATP holds in Redis; see the module docstring."""

    def __init__(self, client, *, key: str = "atp-bridge:holds", ttl_s: float = 900,
                 refresh_s: float = 1.0):
        self.client = client
        self.key = key
        self.ttl_s = ttl_s
        self.refresh_s = refresh_s
        self._held: dict[str, frozenset[str]] = {}  # location -> held product ids
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @classmethod
    def from_config(cls, options) -> "HoldStore":
        """Build from the config's ``holds:`` block (url, key, ttl_s, refresh_s): in
        ``bridge.yaml`` of a config directory, or at the top of a single-file config."""
        import redis

        client = redis.Redis.from_url(options["url"], socket_timeout=options.get("timeout_ms", 500) / 1000,
                                      socket_connect_timeout=options.get("timeout_ms", 500) / 1000)
        return cls(client, key=options.get("key", "atp-bridge:holds"), ttl_s=options.get("ttl_s", 900),
                   refresh_s=options.get("refresh_s", 1.0))

    # -- writing (fulfillment side) ----------------------------------------

    def record(self, location: str, product_ids: Iterable[str], ttl_s: float | None = None) -> int:
        """Hold ``product_ids`` at ``location`` at zero ATP for ``ttl_s``; returns how many."""
        now = time.time()
        expiry = now + (self.ttl_s if ttl_s is None else ttl_s)
        members = {f"{location}{SEP}{p}": expiry for p in product_ids}
        if not members:
            return 0
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(self.key, members)
            pipe.zremrangebyscore(self.key, "-inf", now)
            pipe.execute()
        except Exception as e:
            raise HoldError(f"could not record {len(members)} hold(s) at {location!r}: {e}") from e
        log.info("zero-ATP hold recorded: location=%s products=%d ttl_s=%s", location, len(members),
                 round(expiry - now))
        return len(members)

    def release(self, location: str, product_ids: Iterable[str]) -> int:
        """Drop holds before they expire (stock arrived)."""
        members = [f"{location}{SEP}{p}" for p in product_ids]
        try:
            return int(self.client.zrem(self.key, *members)) if members else 0
        except Exception as e:
            raise HoldError(f"could not release holds at {location!r}: {e}") from e

    def active(self) -> dict[str, frozenset[str]]:
        """Read the live holds from Redis: ``{location: {product_id, ...}}``."""
        try:
            members = self.client.zrangebyscore(self.key, time.time(), "+inf")
        except Exception as e:
            raise HoldError(f"could not read holds: {e}") from e
        held: dict[str, set[str]] = {}
        for m in members:
            m = m.decode() if isinstance(m, bytes) else m
            location, _, product = m.partition(SEP)
            held.setdefault(location, set()).add(product)
        return {loc: frozenset(ps) for loc, ps in held.items()}

    # -- reading (webhook side) --------------------------------------------

    def start(self) -> None:
        """Load once now, then refresh in a daemon thread every ``refresh_s``."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="atp-bridge-holds", daemon=True)
        self._thread.start()

    def refresh(self) -> bool:
        try:
            self._held = self.active()
        except HoldError as e:  # keep the last known holds; log once per outage
            if not self._failing:
                # the cause goes last: Redis' own text ends with a full stop
                log.warning("holds: keeping the %d last known until Redis answers: %s",
                            sum(map(len, self._held.values())), e)
            self._failing = True
            return False
        if self._failing:
            log.info("holds: Redis answers again")
        self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def apply(self, atps: list, pids: Sequence[str], locations: Sequence[str]) -> int:
        """Zero every held (product_id, location) pair of a flat product-major grid."""
        held = self._held
        if not held:
            return 0
        n_l = len(locations)
        hits = 0
        for j, loc in enumerate(locations):
            products = held.get(loc)
            if not products:
                continue
            for i, pid in enumerate(pids):
                if pid in products:
                    atps[i * n_l + j] = 0
                    hits += 1
        return hits

    def healthy(self) -> bool:
        return not self._failing

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.client.close()
