"""Zero-ATP holds: "stop promising this, now".

Two kinds, in one Redis sorted set: a ``no_inventory`` rejection through the
Fulfillment Provider client (:meth:`HoldStore.record`, with a TTL), and a
manual hold (``atp-bridge holds add``, :meth:`HoldStore.add`: a TTL or none,
a reason, and ``*`` for every location). Every worker keeps the live holds in
memory, refreshed by a background thread every ``refresh_s``, so the webhook
honours them without any Redis I/O on the request path: a held pair answers
``atp: 0`` whatever the adapters say, until the hold expires or is removed.

The set's member is ``location\\x1fproduct_id``, its score the expiry as a
Unix timestamp (``+inf``: none); a manual hold's reason and start are in the
hash ``<key>:manual`` under the same member (which is also how a hold is known
to be manual). Reading is one pipeline, expired members are trimmed on write.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence

from atp_bridge.errors import AtpBridgeError

log = logging.getLogger("atp_bridge.holds")

SEP = "\x1f"
ANY = "*"  # a hold's location: every location


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
            # GT: a rejection never shortens a longer hold (a manual one without TTL, say)
            self.client.zadd(self.key, members, gt=True)
            self._trim(now)
        except Exception as e:
            raise HoldError(f"could not record {len(members)} hold(s) at {location!r}: {e}") from e
        log.info("zero-ATP hold recorded: location=%s products=%d ttl_s=%s", location, len(members),
                 round(expiry - now))
        return len(members)

    def add(self, location: str, product_ids: Iterable[str], ttl_s: float | None = None,
            reason: str = "") -> int:
        """A manual hold of ``product_ids`` at ``location`` (``*``: everywhere), for
        ``ttl_s`` seconds or until removed; returns how many pairs."""
        now = time.time()
        expiry = math.inf if ttl_s is None else now + ttl_s
        members = {f"{location}{SEP}{p}": expiry for p in product_ids}
        if not members:
            return 0
        meta = json.dumps({"reason": reason, "since": round(now, 3)})
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(self.key, members)
            pipe.hset(self.key + ":manual", mapping=dict.fromkeys(members, meta))
            pipe.execute()
            self._trim(now)
        except Exception as e:
            raise HoldError(f"could not add {len(members)} hold(s) at {location!r}: {e}") from e
        log.info("manual zero-ATP hold added: location=%s products=%d ttl_s=%s reason=%r", location,
                 len(members), "none" if ttl_s is None else round(ttl_s), reason)
        return len(members)

    def _trim(self, now: float) -> None:
        """Drop expired holds and the manual entries of holds that are gone."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(self.key, "-inf", now)
        pipe.hkeys(self.key + ":manual")
        _, manual = pipe.execute()
        if manual:
            scores = self.client.zmscore(self.key, manual)
            gone = [m for m, sc in zip(manual, scores) if sc is None]
            if gone:
                self.client.hdel(self.key + ":manual", *gone)

    def release(self, location: str, product_ids: Iterable[str]) -> int:
        """Drop holds before they expire (stock arrived, or ``holds remove``)."""
        members = [f"{location}{SEP}{p}" for p in product_ids]
        try:
            if not members:
                return 0
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.key, *members)
            pipe.hdel(self.key + ":manual", *members)
            return int(pipe.execute()[0])
        except Exception as e:
            raise HoldError(f"could not release holds at {location!r}: {e}") from e

    def active(self) -> dict[str, frozenset[str]]:
        """Read the live holds from Redis: ``{location: {product_id, ...}}``."""
        return self._read()[0]

    def _read(self) -> tuple[dict[str, frozenset[str]], int]:
        """``(live holds by location, how many of them are manual)``."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zrangebyscore(self.key, time.time(), "+inf")
            pipe.hkeys(self.key + ":manual")
            members, manual = pipe.execute()
        except Exception as e:
            raise HoldError(f"could not read holds: {e}") from e
        held: dict[str, set[str]] = {}
        for m in members:
            m = m.decode() if isinstance(m, bytes) else m
            location, _, product = m.partition(SEP)
            held.setdefault(location, set()).add(product)
        n_manual = len(set(members) & set(manual))
        return {loc: frozenset(ps) for loc, ps in held.items()}, n_manual

    def listing(self) -> list[dict]:
        """Every live hold, for ``holds list`` and ``query``: product, location,
        kind (``manual`` | ``rejection``), expiry (None: none), reason, since."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zrangebyscore(self.key, time.time(), "+inf", withscores=True)
            pipe.hgetall(self.key + ":manual")
            members, manual = pipe.execute()
        except Exception as e:
            raise HoldError(f"could not read holds: {e}") from e
        out = []
        for m, score in members:
            meta = manual.get(m)
            m = m.decode() if isinstance(m, bytes) else m
            location, _, product = m.partition(SEP)
            info = json.loads(meta) if meta else {}
            out.append({"product": product, "location": location,
                        "kind": "manual" if meta else "rejection",
                        "expires": None if math.isinf(score) else score,
                        "reason": info.get("reason", "no_inventory rejection" if not meta else ""),
                        "since": info.get("since")})
        out.sort(key=lambda h: (h["product"], h["location"]))
        return out

    # -- reading (webhook side) --------------------------------------------

    def start(self) -> None:
        """Load once now, then refresh in a daemon thread every ``refresh_s``."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="atp-bridge-holds", daemon=True)
        self._thread.start()

    def refresh(self) -> bool:
        try:
            held, n_manual = self._read()
            self._held = held
            total = sum(map(len, held.values()))
            # imported here: the CLI imports this module before `serve` sets
            # PROMETHEUS_MULTIPROC_DIR, and prometheus_client picks its value store
            # at import; imported earlier, every worker's /metrics came back empty
            from atp_bridge import metrics

            metrics.HOLDS_ACTIVE.labels("manual").set(n_manual)
            metrics.HOLDS_ACTIVE.labels("rejection").set(total - n_manual)
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
        everywhere = held.get(ANY)
        for j, loc in enumerate(locations):
            products = held.get(loc)
            if everywhere:
                products = products | everywhere if products else everywhere
            if not products:
                continue
            for i, pid in enumerate(pids):
                if pid in products:
                    atps[i * n_l + j] = 0
                    hits += 1
        return hits

    @property
    def any(self) -> bool:
        """Whether any hold is in force in this worker's view."""
        return bool(self._held)

    def held(self, product_id: str, location: str) -> bool:
        """Whether the pair is held (at the location, or everywhere)."""
        held = self._held
        return product_id in held.get(location, ()) or product_id in held.get(ANY, ())

    def healthy(self) -> bool:
        return not self._failing

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.client.close()
