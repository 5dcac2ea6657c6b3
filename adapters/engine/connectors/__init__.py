"""Vendor connectors, one module per vendor, each a preset on the engine
(:mod:`atp_bridge.adapters.engine.connector`)."""
