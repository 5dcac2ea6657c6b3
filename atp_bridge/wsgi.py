"""WSGI entry point for any server: ``gunicorn atp_bridge.wsgi:app``.

The config comes from ``$ATP_BRIDGE_CONFIG`` (else the embedded sample).
"""
from atp_bridge.app import create_app

app = create_app()
