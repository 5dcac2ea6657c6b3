"""``type: redis``: ATP read from Redis keys, or a read-through cache in front of another adapter.

``mode: source`` reads keys another system writes (``atp:{location}:{product}``
by default); a missing key is unknown, a value that is not a number is an
adapter failure naming the key.

``mode: cache`` wraps the adapter named by ``upstream``. Per request: ONE MGET
for every pair (per node on a cluster), then ONE upstream batch for the misses,
then ONE pipeline of ``SET key value EX ttl_s`` for the answers. A warm request
is one Redis round trip and no upstream call. Pairs the upstream does not know
are cached as an empty string and read back as unknown (None), not as 0, so a
cached answer is exactly what the upstream said.

When Redis is unavailable, ``on_redis_error: bypass`` (the default) answers
from the upstream directly; ``fail`` makes the request fail like any adapter
failure. See the README, "type: redis".
"""
from __future__ import annotations

import math
import threading
import time

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from atp_bridge.adapters.base import Adapter, Batch, Health
from atp_bridge.adapters.redis_conn import (DEFAULT_KEY, TLS_FILES, KeyTemplate, LazyClient, Outage, make_client,
                                 redact_url, redis_errors, template_problem)
from atp_bridge import metrics, tracing
from atp_bridge.errors import AdapterError, AdapterTimeout, AdapterUnavailable, ConfigError

UNKNOWN = b""  # cached marker: "the upstream does not know this pair"


class RedisOptionsSchema(Schema):
    """The ``type: redis`` keys; unknown keys are rejected."""

    class Meta:
        unknown = RAISE

    mode = fields.String(required=True, validate=validate.OneOf(["cache", "source"]))
    url = fields.String(required=True, validate=validate.Regexp(
        r"^rediss?://", error="Must be a redis:// or rediss:// URL."))
    cluster = fields.Boolean(load_default=False)
    upstream = fields.String(load_default=None, validate=validate.Length(min=1))
    key = fields.String(load_default=DEFAULT_KEY)
    prefix = fields.String(load_default="")
    ttl_s = fields.Integer(load_default=60, validate=validate.Range(min=1))
    timeout_ms = fields.Integer(load_default=200, validate=validate.Range(min=1, max=60_000))
    max_connections = fields.Integer(load_default=32, validate=validate.Range(min=1, max=10_000))
    on_redis_error = fields.String(load_default="bypass", validate=validate.OneOf(["bypass", "fail"]))
    password = fields.String(load_default=None)
    ssl_ca_certs = fields.String(load_default=None)
    ssl_certfile = fields.String(load_default=None)  # client certificate (mutual TLS) ...
    ssl_keyfile = fields.String(load_default=None)  # ... and its private key
    ssl_cert_reqs = fields.String(load_default=None, validate=validate.OneOf(["required", "optional", "none"]))
    health_cache_s = fields.Float(load_default=2.0, validate=validate.Range(min=0))

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _check(self, data, original, **kwargs):
        problems = {}
        if data.get("mode") == "cache" and not data.get("upstream"):
            problems["upstream"] = ["Required in mode: cache (the name of the adapter to cache)."]
        if data.get("mode") == "source" and data.get("upstream"):
            problems["upstream"] = ["Not allowed in mode: source (only a cache has an upstream)."]
        if data.get("mode") == "source" and "on_redis_error" in original:
            problems["on_redis_error"] = ["Only for mode: cache; in mode: source an unavailable "
                                          "Redis is always an adapter failure."]
        why = template_problem(data.get("key", DEFAULT_KEY))
        if why:
            problems["key"] = [why]
        # (no url: its own problem is reported, e.g. an unset ${REDIS_URL}; the TLS keys
        # cannot be judged against it)
        if "url" in data and not str(data["url"]).startswith("rediss://"):
            for opt in ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile"):
                if data.get(opt) is not None:
                    problems[opt] = ["Only with a rediss:// (TLS) url."]
        if (data.get("ssl_certfile") is None) != (data.get("ssl_keyfile") is None):
            missing = "ssl_keyfile" if data.get("ssl_keyfile") is None else "ssl_certfile"
            problems.setdefault(missing, []).append(
                "Required with ssl_certfile/ssl_keyfile: a client certificate needs both.")
        if problems:
            raise ValidationError(problems)


def parse_number(raw: bytes):
    """int or float from a Redis value, or None when it is not a finite number."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def encode(value) -> str:
    """What the cache stores for an upstream answer (None -> the UNKNOWN marker)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(int(value)) if isinstance(value, (bool, int)) else str(value)


class RedisAdapter(Adapter):
    """Redis as an ATP source (``mode: source``) or read-through cache (``mode: cache``).

    ``client`` is a ready-made ``redis.Redis`` / ``RedisCluster``;
    ``client_factory`` builds one on first use instead (what ``from_config``
    does, so a Redis that is down at startup does not stop the bridge).
    ``bypasses`` counts the requests a cache answered straight from its
    upstream because Redis was unavailable.
    """

    options_schema = RedisOptionsSchema
    file_options = TLS_FILES

    def __init__(self, name, *, mode, client=None, client_factory=None, upstream: Adapter | None = None,
                 key=DEFAULT_KEY, prefix="", ttl_s=60, on_redis_error="bypass", cluster=False,
                 health_cache_s=2.0, where="redis", **kw):
        super().__init__(name, **kw)
        if mode == "cache" and upstream is None:
            raise ValueError("mode='cache' needs an upstream adapter")
        if (client is None) == (client_factory is None):
            raise ValueError("pass exactly one of client and client_factory")
        self.mode = mode
        self.upstream = upstream
        self.keys = KeyTemplate(key, prefix)
        self.ttl_s = ttl_s
        self.cluster = cluster
        self.health_cache_s = health_cache_s
        self.where = where
        self.client = LazyClient(client_factory or (lambda: client))
        self.bypassing = mode == "cache" and on_redis_error == "bypass"
        consequence = (f"bypassing the cache: answering from upstream {upstream.name!r} until it returns"
                       if self.bypassing else "requests fail (zero ATP) until it returns")
        self.outage = Outage(name, where, consequence)
        self.bypasses = 0
        # label children resolved once, not per request; written in batches
        self._hits, self._misses, self._bypassed = (metrics.batched(metrics.CACHE.labels(name, r))
                                                    for r in ("hit", "miss", "bypass"))
        self._count_lock = threading.Lock()
        self._health: tuple[float, Health] | None = None

    @classmethod
    def from_config(cls, spec, upstream: Adapter | None = None) -> "RedisAdapter":
        opts = dict(spec.options)
        if opts["mode"] == "cache":
            if upstream is None:
                raise ConfigError([f"{spec.source}: upstream: adapter {opts['upstream']!r} was not built"])
            if upstream.match_on != spec.match_on:
                raise ConfigError([f"{spec.source}: match_on: the cache uses {spec.match_on!r} but its "
                                   f"upstream {upstream.name!r} uses {upstream.match_on!r}; make them equal"])
        return cls(spec.name, mode=opts["mode"], upstream=upstream,
                   client_factory=lambda: make_client(opts, spec.base_dir),
                   key=opts["key"], prefix=opts["prefix"], ttl_s=opts["ttl_s"],
                   on_redis_error=opts["on_redis_error"], cluster=opts["cluster"],
                   health_cache_s=opts["health_cache_s"], where=redact_url(opts["url"]),
                   locations=spec.locations, match_on=spec.match_on)

    # -- the request path ------------------------------------------------------

    def lookup(self, batch: Batch) -> list:
        pairs = batch.pairs()
        if not pairs:
            return []
        keys = self.keys.keys(pairs)
        if batch.remaining() <= 0:  # never bypassed: the upstream would be late too
            raise AdapterTimeout(self.name, "deadline passed before the Redis read")
        if self.mode == "source":
            return self._source(keys)
        try:
            raw = self._mget(keys)
        except AdapterError:  # a slow Redis (AdapterTimeout) is bypassed like a dead one
            if not self.bypassing:
                raise
            with self._count_lock:
                self.bypasses += 1
            self._bypassed.inc(len(pairs))
            return self.upstream.fetch(batch)
        values: list = [None] * len(pairs)
        missing = []
        for i, r in enumerate(raw):
            if r is None:
                missing.append(i)
            elif r != UNKNOWN:
                v = parse_number(r)
                if v is None:  # not ours (or corrupted): refetch and overwrite
                    missing.append(i)
                values[i] = v
        self._hits.inc(len(pairs) - len(missing))
        if missing:
            self._misses.inc(len(missing))
            self._fill(batch, pairs, keys, values, missing)
        return values

    def _source(self, keys: list[str]) -> list:
        values = []
        for key, r in zip(keys, self._mget(keys)):
            if r is None:
                values.append(None)
                continue
            v = parse_number(r)
            if v is None:
                raise AdapterError(self.name, f"key {key!r} holds {r[:40]!r}, not a number")
            values.append(v)
        return values

    def _mget(self, keys: list[str]) -> list:
        """One round trip (one per node on a cluster); Redis errors -> AdapterError
        (AdapterTimeout for a Redis timeout)."""
        if not self.outage.should_try():
            raise AdapterUnavailable(self.name, f"Redis at {self.where} is down "
                                                f"({self.outage.last_error}); retrying shortly")
        try:
            client = self.client.get()
            mget = client.mget_nonatomic if self.cluster else client.mget
            raw = mget(keys) if tracing.tracer is None else tracing.redis_call(self.where, "MGET", len(keys),
                                                                              mget, keys)
        except redis_errors() as e:
            import redis

            self.outage.failed(e)
            kind = AdapterTimeout if isinstance(e, (redis.TimeoutError, TimeoutError)) else AdapterError
            raise kind(self.name, f"Redis at {self.where}: {type(e).__name__}: {e}") from e
        self.outage.succeeded()
        return raw

    def _fill(self, batch: Batch, pairs, keys, values: list, missing: list[int]) -> None:
        """Ask the upstream for the misses in ONE batch, fill them in, cache them.

        The upstream takes a products x locations grid, so the sub-batch is
        every product with a miss x every location with a miss. When the misses
        are not a full rectangle this over-asks a little; only the missing
        pairs are taken from the answer and cached, the hits stay as cached.
        """
        want_p: dict[str, None] = {}
        want_l: dict[str, None] = {}
        for i in missing:
            p, loc = pairs[i]
            if self.upstream.serves(loc):
                want_p[p] = None
                want_l[loc] = None
        if not want_p:
            return
        sub = Batch(list(want_p), list(want_l), batch.deadline)
        if sub.remaining() <= 0:
            raise AdapterTimeout(self.name, "deadline passed before asking the upstream")
        got = dict(zip(sub.pairs(), self.upstream.fetch(sub)))  # upstream errors propagate as-is
        writes: dict[str, str] = {}
        for i in missing:
            if pairs[i] in got:
                values[i] = v = got[pairs[i]]
                writes[keys[i]] = encode(v)
        self._write(writes, batch)

    def _write(self, writes: dict[str, str], batch: Batch) -> None:
        """One pipeline of SET EX. A failed write never fails the request: the
        answer is already in hand; it only marks Redis down (logged once)."""
        if not writes or batch.remaining() <= 0:
            return
        try:
            pipe = self.client.get().pipeline(transaction=False)
            for key, value in writes.items():
                pipe.set(key, value, ex=self.ttl_s)
            if tracing.tracer is None:
                pipe.execute()
            else:
                tracing.redis_call(self.where, "SET", len(writes), pipe.execute)
        except redis_errors() as e:
            self.outage.failed(e)

    # -- health and lifecycle --------------------------------------------------

    def health(self) -> Health:
        """PING (on a cluster, every primary), cached ``health_cache_s``.

        A cache that bypasses a down Redis stays ``ok: True`` (ready) with a
        detail saying so and ``bypassing: true``: requests are still answered
        correctly from the upstream (whose own health ``/readyz`` lists too), so
        taking every replica out of the load balancer because a shared Redis is
        down would turn a slower answer into no answer.
        """
        cached = self._health
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.health_cache_s:
            return cached[1]
        info = {"mode": self.mode, "redis": self.where, "bypasses": self.bypasses}
        if self.upstream is not None:
            info["upstream"] = self.upstream.name
        try:
            client = self.client.get()
            if self.cluster:  # every primary: PING alone asks one node, which may be a live one
                client.ping(target_nodes=client.PRIMARIES)
            else:
                client.ping()
        except redis_errors() as e:
            self.outage.failed(e)
            problem = f"Redis at {self.where} unreachable: {type(e).__name__}: {e}"
            if self.bypassing:  # the Redis error last: its own full stop ends the line
                health = Health(True, f"bypassing the cache, answering from upstream "
                                      f"{self.upstream.name!r}; {problem}", {**info, "bypassing": True})
            else:
                health = Health(False, problem, {**info, "bypassing": False})
        else:
            self.outage.succeeded()
            health = Health(True, "PING ok", {**info, "bypassing": False})
        self._health = (now, health)
        return health

    def close(self) -> None:
        self.client.close()
