"""Frozen dataclasses the loaded configuration is made of."""
from __future__ import annotations

import os

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def resolve_file(base_dir: str, name: str) -> str:
    """A file named in a config option: ``~`` expanded, relative to the config directory."""
    return os.path.join(base_dir, os.path.expanduser(name))


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter's validated configuration.

    ``options`` is what the adapter class's ``options_schema`` loaded from the
    type-specific keys. ``source`` names the YAML file and ``key_prefix`` the
    adapter's place in it (``adapters[2].`` in a single-file config), for
    messages; ``base_dir`` is the config's folder: relative paths in options
    resolve against it.
    """

    name: str
    type: str
    locations: tuple[str, ...] = ("*",)
    match_on: str = "external_identifier"
    options: Mapping[str, Any] = field(default_factory=dict)
    upstream: str | None = None
    source: str = "<memory>"
    base_dir: str = "."
    key_prefix: str = ""
    id_maps: Any = None  # atp_bridge.adapters.idmaps.IdMaps (location_map, product_map)

    def file(self, key: str) -> str | None:
        """Option ``key`` as a path resolved against ``base_dir``; None when unset."""
        name = self.options.get(key)
        return resolve_file(self.base_dir, name) if name else None


@dataclass(frozen=True)
class SafetyStock:
    """Units held back (atp_bridge/rules/safety.py): per pair (from ``file``), per
    product, per location, else ``default``. ``path`` is ``file`` resolved."""

    default: float = 0
    locations: Mapping[str, float] = field(default_factory=dict)
    products: Mapping[str, float] = field(default_factory=dict)
    file: str | None = None
    reload_interval_s: float = 2.0
    path: str | None = None

    def for_location(self, location: str) -> float:
        return self.locations.get(location, self.default)


@dataclass(frozen=True)
class BundlesConfig:
    """``bundles:``: ``{bundle: {component: quantity}}`` inline and/or from ``file``."""

    recipes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    file: str | None = None
    reload_interval_s: float = 2.0
    path: str | None = None


@dataclass(frozen=True)
class CapsConfig:
    """``caps:``: the most one pair may promise (atp_bridge/rules/__init__.py)."""

    default: int | None = None
    locations: Mapping[str, int] = field(default_factory=dict)
    products: Mapping[str, int] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return self.default is not None or bool(self.locations) or bool(self.products)


@dataclass(frozen=True)
class BridgeConfig:
    """The whole, validated configuration of one atp-bridge process."""

    adapters: tuple[AdapterSpec, ...]
    base_path: str = "/newstore_api/v0"
    api_keys: tuple[str, ...] = ()
    deadline_ms: int = 3000
    max_pairs: int = 50_000
    max_body_bytes: int = 5 * 1024 * 1024
    merge: str = "first"
    on_error: str = "zero_all"
    safety_stock: SafetyStock = field(default_factory=SafetyStock)
    omit_unknown: bool = False
    adapter_threads: int = 16
    log_level: str = "INFO"
    holds: Mapping[str, Any] | None = None
    bundles: BundlesConfig | None = None
    caps: CapsConfig | None = None
    rule_files: Mapping[str, Any] | None = None  # what loading read of the rule files
    source: str = "<memory>"

    def __repr__(self) -> str:  # never print the API keys
        return (f"BridgeConfig(source={self.source!r}, adapters={[a.name for a in self.adapters]!r}, "
                f"api_keys=<{len(self.api_keys)} hidden>)")
