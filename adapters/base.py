"""The adapter contract: one base class every ATP source implements.

An adapter gets ONE batch per webhook request (all the products it is asked
for times all the locations routed to it) and returns what it knows. It never
sees Flask. :meth:`Adapter.fetch` is the public entry point: it times the
call, counts failures (``atp_bridge_adapter_*`` metrics), checks the shape of
the answer and converts any library error into an
:class:`~atp_bridge.errors.AdapterError` carrying the adapter's name.
Subclasses implement :meth:`Adapter.lookup` (the I/O) and may override
:meth:`Adapter.health` and :meth:`Adapter.close`.
"""
from __future__ import annotations

import abc
import fnmatch
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import Schema

from atp_bridge import metrics, tracing
from atp_bridge.errors import AdapterError, AdapterTimeout

# An ATP value as a source reports it: int or float, or None for "unknown".
Value = "int | float | None"


class Batch:
    """One adapter's share of a request: ``products`` x ``locations``.

    ``products`` holds the keys the adapter matches on (``external_identifier``
    or ``product_id``, per its ``match_on``). Pairs are product-major, the order
    of :meth:`pairs` and of the list :meth:`Adapter.lookup` returns.
    ``deadline`` is a :func:`time.monotonic` timestamp the answer is due by.
    """

    __slots__ = ("products", "locations", "deadline")

    def __init__(self, products: Sequence[str], locations: Sequence[str], deadline: float):
        self.products = products
        self.locations = locations
        self.deadline = deadline

    def __len__(self) -> int:
        return len(self.products) * len(self.locations)

    def pairs(self) -> list[tuple[str, str]]:
        """Every (product, location) pair, product-major."""
        locations = self.locations
        return [(p, loc) for p in self.products for loc in locations]

    def remaining(self) -> float:
        """Seconds left before the deadline (may be negative)."""
        return self.deadline - time.monotonic()

    def __repr__(self) -> str:
        return f"Batch({len(self.products)} products x {len(self.locations)} locations)"


class WholeNumbers(list):
    """An answer whose every value is an ``int`` >= 0 or None (unknown).

    An adapter may return one from :meth:`Adapter.lookup` when it knows this
    holds (the CSV adapter does for a file of whole numbers): the bridge then
    skips flooring and clamping each value, a pass over every pair.
    """

    __slots__ = ()


@dataclass(frozen=True)
class Health:
    """An adapter's readiness as reported on ``/readyz``."""

    ok: bool
    detail: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "detail": self.detail, **self.info}


class Adapter(abc.ABC):
    """Base class of every ATP source.

    Class attributes a subclass sets:

    * ``options_schema``: a marshmallow ``Schema`` for the adapter's own YAML
      keys (unknown keys are rejected). ``from_config`` receives its output.
    * ``blocking``: False for adapters that answer from memory (CSV); the bridge
      then calls them inline instead of handing them to its thread pool.
    * ``file_options``: option keys that name files the adapter needs at
      start (certificates); :meth:`check` reports a missing one as a problem.
    * ``data_file_options``: option keys that name data files the adapter
      picks up whenever they appear (a sidecar may sync them after start);
      :meth:`warnings` reports a missing one as a warning.
    """

    options_schema: ClassVar[type[Schema] | None] = None
    blocking: ClassVar[bool] = True
    file_options: ClassVar[tuple[str, ...]] = ()
    data_file_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, *, locations: Sequence[str] = ("*",),
                 match_on: str = "external_identifier"):
        self.name = name
        self.locations = tuple(locations)
        self.match_on = match_on
        self._serves: dict[str, bool] = {}
        # label children resolved once: fetch() must not look labels up per call
        self._latency = metrics.batched(metrics.ADAPTER_LATENCY.labels(name))
        self._errors: dict[str, object] = {}
        self.id_maps = None  # adapters.idmaps.IdMaps, set from the config's location_map / product_map

    @classmethod
    def from_config(cls, spec, upstream: "Adapter | None" = None) -> "Adapter":
        """Build the adapter from an :class:`atp_bridge.config.AdapterSpec`.

        ``spec.options`` is what ``options_schema`` loaded. ``upstream`` is the
        adapter named by ``spec.upstream`` (only for adapters that wrap one).
        """
        return cls(spec.name, locations=spec.locations, match_on=spec.match_on, **spec.options)

    @classmethod
    def check(cls, spec) -> list[tuple[str, str]]:
        """Problems with ``spec`` that ``options_schema`` cannot see, as
        ``(key, message)`` pairs; ``check-config`` and ``serve`` report them
        with the file and key before any adapter is built. By default: every
        option named in ``file_options`` that is set must name an existing
        file (relative to the config directory, ``spec.base_dir``)."""
        return [(key, f"no such file {path}") for key in cls.file_options
                if (path := spec.file(key)) and not os.path.isfile(path)]

    @classmethod
    def warnings(cls, spec) -> list[tuple[str, str]]:
        """What may keep a valid ``spec`` from serving yet, as ``(key,
        message)`` pairs: ``check-config`` prints them as warnings (exit 0,
        exit 1 with ``--strict``) and the app logs them at start, which goes
        on. By default: every option named in ``data_file_options`` that is
        set must name a readable file."""
        found = []
        for key in cls.data_file_options:
            path = spec.file(key)
            if not path:
                continue
            path = os.path.normpath(path)
            if not os.path.exists(path):
                found.append((key, f"no such file {path} (yet): adapter {spec.name!r} has no data until "
                                   f"it appears"))
            elif not os.path.isfile(path):
                found.append((key, f"{path} is not a file: adapter {spec.name!r} has no data until a "
                                   f"file replaces it"))
            elif not os.access(path, os.R_OK):
                found.append((key, f"{path} cannot be read by this user (permission denied): adapter "
                                   f"{spec.name!r} has no data"))
        return found

    def serves(self, location: str) -> bool:
        """True when ``location`` matches one of the adapter's glob patterns."""
        hit = self._serves.get(location)
        if hit is None:
            hit = any(fnmatch.fnmatchcase(location, pat) for pat in self.locations)
            # bounded in count and size (locations come from callers, of any
            # length): at most ~22 MB; full, it starts over rather than freeze
            # on the first 100,000 names it saw
            if len(location) <= 128:
                if len(self._serves) >= 100_000:
                    self._serves.clear()
                self._serves[location] = hit
        return hit

    def fetch(self, batch: Batch) -> list:
        """Answer ``batch``: a list of ATP values (None = unknown), product-major.

        Any exception becomes an :class:`AdapterError` naming this adapter.
        Every call is timed; failures, and answers that arrive after the
        batch's deadline (the bridge has given up on them), are counted in
        ``atp_bridge_adapter_errors_total``. With tracing on, the call is a span.
        """
        if tracing.tracer is not None:
            return tracing.adapter_call(self, batch, self._measured_fetch)
        return self._measured_fetch(batch)

    def _measured_fetch(self, batch: Batch) -> list:
        started = time.perf_counter()
        if self.id_maps is not None:  # the source's ids, same order: answers stay by position
            batch = self.id_maps.apply(batch)
        try:
            answer = self._fetch(batch)
        except AdapterError as e:
            self._count_error(e.reason)
            raise
        finally:
            self._latency.observe(time.perf_counter() - started)
        if time.monotonic() > batch.deadline:
            self._count_error(AdapterTimeout.reason)
        return answer

    def _count_error(self, reason: str) -> None:
        child = self._errors.get(reason)
        if child is None:
            child = self._errors[reason] = metrics.ADAPTER_ERRORS.labels(self.name, reason)
        child.inc()

    def _fetch(self, batch: Batch) -> list:
        try:
            answer = self.lookup(batch)
        except AdapterError:
            raise
        except TimeoutError as e:
            raise AdapterTimeout(self.name, f"timed out: {e}") from e
        except Exception as e:  # converted at the boundary, never swallowed
            raise AdapterError(self.name, f"{type(e).__name__}: {e}") from e
        if not isinstance(answer, list):  # a list (or WholeNumbers) needs no conversion
            if isinstance(answer, Mapping):
                get = answer.get
                return [get(pair) for pair in batch.pairs()]
            answer = list(answer)
        if len(answer) != len(batch):
            raise AdapterError(self.name, f"returned {len(answer)} values for {len(batch)} pairs")
        return answer

    @abc.abstractmethod
    def lookup(self, batch: Batch) -> "Sequence | Mapping[tuple[str, str], int | float]":
        """Do the I/O for ``batch``.

        Return either a sequence aligned with ``batch.pairs()`` (None where the
        source does not know the pair) or a mapping ``{(product, location): atp}``
        holding only the pairs the source knows. Raise on failure. A
        :class:`WholeNumbers` list promises ints >= 0 (or None) and is used as is.
        """

    def health(self) -> Health:
        """Readiness of the source; override to check a connection or a file."""
        return Health(True, "ok")

    def close(self) -> None:
        """Release connections, threads and files."""


@dataclass(frozen=True)
class ConfigWarning:
    """One :meth:`Adapter.warnings` entry of a loaded config, with its file and key."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


def config_warnings(config) -> list[ConfigWarning]:
    """Every adapter's :meth:`Adapter.warnings` for a loaded
    :class:`~atp_bridge.config_types.BridgeConfig`, in adapter order."""
    from atp_bridge.adapters import adapter_class  # late: the package imports this module

    return [ConfigWarning(spec.source, spec.key_prefix + key, message)
            for spec in config.adapters
            for key, message in adapter_class(spec.type).warnings(spec)]
