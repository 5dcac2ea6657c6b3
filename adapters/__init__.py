"""Pluggable ATP sources.

Built-in types are found by name first (``csv``, ``rest``, ``redis``), then
third-party ones through the entry-point group ``atp_bridge.adapters``
(``type: <entry point name>``). Entry points are loaded once, on first use.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from atp_bridge.adapters.base import Adapter, Batch, Health
from atp_bridge.errors import UnknownAdapterType

__all__ = ["Adapter", "Batch", "Health", "adapter_class", "known_types"]

ENTRY_POINT_GROUP = "atp_bridge.adapters"

# name -> "module:Class"; imported lazily so a missing optional library only
# matters to the configs that use that adapter.
BUILTINS = {
    "csv": "atp_bridge.adapters.csv_file:CsvAdapter",
    "rest": "atp_bridge.adapters.rest:RestAdapter",
    "redis": "atp_bridge.adapters.redis_cache:RedisAdapter",
    # vendor connectors on the REST engine (adapters/engine/connectors/)
    "sap-availability": "atp_bridge.adapters.engine.connectors.sap:SapAvailability",
    "sap-material-stock": "atp_bridge.adapters.engine.connectors.sap:SapMaterialStock",
    "d365-inventory-visibility": "atp_bridge.adapters.engine.connectors.d365:InventoryVisibility",
    "netsuite": "atp_bridge.adapters.engine.connectors.netsuite:NetSuite",
    "commercetools": "atp_bridge.adapters.engine.connectors.commercetools:Commercetools",
    "erpnext": "atp_bridge.adapters.engine.connectors.erpnext:ERPNext",
    "salesforce-oci": "atp_bridge.adapters.engine.connectors.salesforce:OmnichannelInventory",
    "odoo": "atp_bridge.adapters.engine.connectors.odoo:Odoo",
    "shopify": "atp_bridge.adapters.engine.connectors.shopify:Shopify",
}

_plugins: dict | None = None


def _entry_points() -> dict:
    global _plugins
    if _plugins is None:
        _plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _plugins


def known_types() -> list[str]:
    """Every adapter type name: built-ins first, then entry points."""
    return list(BUILTINS) + sorted(n for n in _entry_points() if n not in BUILTINS)


def adapter_class(name: str) -> type[Adapter]:
    """The class for adapter ``type: name``; raises UnknownAdapterType."""
    target = BUILTINS.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name == module:  # the built-in is not shipped in this build
                raise UnknownAdapterType(name, known_types()) from e
            raise
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownAdapterType(name, known_types())
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise UnknownAdapterType(name, known_types())
    return cls
