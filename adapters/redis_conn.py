"""Redis plumbing for :mod:`atp_bridge.adapters.redis_cache` and ``atp-bridge cache flush``.

Three small pieces kept apart from the adapter's logic:

* :func:`make_client` turns the adapter's options into a ``redis.Redis`` (one
  bounded, blocking connection pool per process) or a
  ``redis.cluster.RedisCluster``; TLS via ``rediss://``.
* :class:`KeyTemplate` renders ``key`` (plus ``prefix``) for a pair and derives
  the SCAN ``MATCH`` pattern that selects a subset of those keys.
* :class:`Outage` remembers whether Redis is down, so an outage is logged once
  (and its recovery once), not once per request.
"""
from __future__ import annotations

import logging
import string
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from atp_bridge.config_types import resolve_file

log = logging.getLogger("atp_bridge.adapters.redis")

DEFAULT_KEY = "atp:{location}:{product}"
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")  # options naming files
FIELDS = frozenset({"location", "product"})
# While Redis is down, at most one request per interval tries it again; the
# others go straight to the fallback instead of each paying a connect timeout.
PROBE_INTERVAL_S = 1.0

_GLOB_SPECIALS = "\\*?[]"


def redis_errors() -> tuple[type[BaseException], ...]:
    """Every exception that means "Redis did not answer": redis-py's errors
    (the cluster client's discovery errors are not RedisError subclasses) and
    socket errors."""
    import redis
    from redis.exceptions import RedisClusterException

    return (redis.RedisError, RedisClusterException, OSError)


def template_problem(template: str) -> str | None:
    """Why ``template`` is not a usable key template, or None when it is."""
    try:
        names = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        return f"invalid key template: {e}"
    unknown = sorted(set(names) - FIELDS)
    if unknown:
        return f"unknown field(s) {unknown} in key template; use {{location}} and {{product}}"
    if set(names) != FIELDS:
        return "the key template must contain both {location} and {product}"
    return None


def glob_escape(text: str) -> str:
    """Escape ``text`` for a Redis SCAN ``MATCH`` pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIALS else c for c in text)


class KeyTemplate:
    """``prefix`` + ``key``, e.g. ``atp:{location}:{product}``."""

    def __init__(self, template: str = DEFAULT_KEY, prefix: str = ""):
        self.template = template
        self.prefix = prefix
        self._full = prefix.replace("{", "{{").replace("}", "}}") + template

    def keys(self, pairs) -> list[str]:
        """Keys for ``pairs`` of ``(product, location)``, in order."""
        fmt = self._full.format
        return [fmt(product=p, location=loc) for p, loc in pairs]

    def match_pattern(self, product: str | None = None, location: str | None = None) -> str:
        """SCAN pattern for every key of this template, optionally narrowed to
        one product and/or one location. Literal parts are glob-escaped."""
        out = [glob_escape(self.prefix)]
        for literal, name, _, _ in string.Formatter().parse(self.template):
            out.append(glob_escape(literal))
            if name is not None:
                value = product if name == "product" else location
                out.append("*" if value is None else glob_escape(value))
        return "".join(out)


def redact_url(url: str) -> str:
    """``url`` without its password, safe for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def connection_kwargs(options: dict, base_dir: str = ".") -> dict:
    """redis-py keyword arguments from the adapter options (not the URL)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout_s = options.get("timeout_ms", 200) / 1000
    kwargs = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        # redis-py retries 3 times with backoff by default: that alone could
        # outlast NewStore's deadline. The request deadline is the retry budget.
        "retry": Retry(NoBackoff(), 0),
        "max_connections": options.get("max_connections", 32),
    }
    if options.get("password") is not None:
        kwargs["password"] = options["password"]
    if urlsplit(options["url"]).scheme == "rediss":
        reqs = options.get("ssl_cert_reqs") or "required"  # the schema loads None when unset
        kwargs["ssl_cert_reqs"] = reqs
        kwargs["ssl_check_hostname"] = reqs == "required"
        for key in TLS_FILES:
            if options.get(key):
                kwargs[key] = resolve_file(base_dir, options[key])
    return kwargs


def make_client(options: dict, base_dir: str = "."):
    """A redis-py client for ``options``; no connection is opened yet.

    Standalone: a ``BlockingConnectionPool`` of ``max_connections`` (a thread
    waits up to ``timeout_ms`` for a free connection rather than failing).
    Cluster: ``RedisCluster`` discovers the nodes on first use, which needs
    Redis up, so callers build it lazily (see :class:`LazyClient`).
    """
    import redis
    from redis.cluster import RedisCluster

    kwargs = connection_kwargs(options, base_dir)
    if options.get("cluster"):
        return RedisCluster.from_url(options["url"], **kwargs)
    pool = redis.BlockingConnectionPool.from_url(
        options["url"], timeout=kwargs["socket_timeout"], **kwargs)
    return redis.Redis(connection_pool=pool)


class LazyClient:
    """Builds the client on first use: a cluster client contacts the cluster
    when it is built, and a Redis that is down at startup must not stop the
    bridge from starting (cache mode can bypass it)."""

    def __init__(self, factory):
        self._factory = factory
        self._client = None
        self._lock = threading.Lock()

    def get(self):
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                client = self._client
        return client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class Outage:
    """Up/down state of one Redis, shared by the worker's threads.

    :meth:`failed` logs the first failure of an outage (WARNING) and
    :meth:`succeeded` logs the recovery (INFO): once each, never per request.
    """

    def __init__(self, adapter: str, where: str, consequence: str = ""):
        self.adapter = adapter
        self.where = where
        self.consequence = consequence
        self.down_since: float | None = None
        self.last_error = ""
        self._next_probe = 0.0
        self._lock = threading.Lock()

    def should_try(self) -> bool:
        """True when up, or when down and it is this caller's turn to probe."""
        if self.down_since is None:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._next_probe:
                return False
            self._next_probe = now + PROBE_INTERVAL_S
            return True

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.last_error = f"{type(error).__name__}: {error}"
            self._next_probe = time.monotonic() + PROBE_INTERVAL_S
            if self.down_since is not None:
                return
            self.down_since = time.time()
        log.warning("adapter %r: Redis at %s is unavailable (%s)%s", self.adapter, self.where,
                    self.last_error, f"; {self.consequence}" if self.consequence else "")

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            lasted = time.time() - self.down_since
            self.down_since = None
        log.info("adapter %r: Redis at %s recovered after %.1f s", self.adapter, self.where, lasted)


def unlink_matching(client, pattern: str, *, cluster: bool = False, batch: int = 500) -> int:
    """UNLINK every key matching ``pattern``; return how many were dropped.

    Walks the keyspace with SCAN (never KEYS, which blocks Redis) and unlinks
    in batches of ``batch``. On a cluster every primary is scanned, and the
    keys are unlinked one per command in a pipeline: the keys found on one node
    live in different slots, and a multi-key UNLINK across slots is refused.
    """
    if not cluster:
        return _unlink_node(client, pattern, batch, multi_key=True)
    return sum(_unlink_node(client.get_redis_connection(node), pattern, batch, multi_key=False)
               for node in client.get_primaries())


def _unlink_node(node, pattern: str, batch: int, *, multi_key: bool) -> int:
    dropped = 0
    found: list[bytes] = []

    def flush() -> int:
        if multi_key:
            return node.unlink(*found)
        pipe = node.pipeline(transaction=False)
        for key in found:
            pipe.unlink(key)
        return sum(pipe.execute())

    for key in node.scan_iter(match=pattern, count=batch):
        found.append(key)
        if len(found) >= batch:
            dropped += flush()
            found.clear()
    if found:
        dropped += flush()
    return dropped
