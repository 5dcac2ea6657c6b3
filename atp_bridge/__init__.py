"""atp-bridge: NewStore's External Availability Webhook for Tier-2 OMS retailers.

``create_app`` lives in :mod:`atp_bridge.app`; importing this package stays
cheap (and cycle-free for the ``adapters`` package, which imports
:mod:`atp_bridge.errors`).
"""
from __future__ import annotations

__all__ = ["create_app"]


def create_app(config=None):
    """Build the Flask app; see :func:`atp_bridge.app.create_app`."""
    from atp_bridge.app import create_app as _create_app

    return _create_app(config)
