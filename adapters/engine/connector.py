"""Vendor connectors: a ``type:`` with a few keys of its own, built on the engine.

A connector is not a copy of the REST adapter: it is a preset. Its schema
takes the vendor's keys (``url``, ``atp_checking_rule``, ``client_id``...)
plus the REST keys that still apply (:data:`COMMON_KEYS`), and
:meth:`Connector.preset` turns the vendor's keys into the engine's
(``per``, ``path``, ``params``, ``body``, ``extract``, ``paginate``, ``auth``),
which are then loaded by the REST adapter's own schema, so a connector gets
the same compiled templates, budget, retries, circuit, vendor error messages
and ``check-config`` messages as ``type: rest``. A subclass sets
``connector_fields`` (marshmallow fields of its own keys) and ``preset``::

    class SapAvailability(Connector):
        connector_fields = {"url": url_field(required=True), ...}

        @classmethod
        def preset(cls, own: dict) -> dict:
            return {"url": own["url"], "per": "pair", "path": "/DetermineAvailabilityAt", ...}
"""
from __future__ import annotations

from typing import ClassVar

from marshmallow import RAISE, Schema, ValidationError, post_load

from atp_bridge.adapters.rest import RestAdapter
from atp_bridge.adapters.rest_options import RestOptionsSchema

__all__ = ["Connector", "COMMON_KEYS"]

# REST keys a connector accepts as they are (the rest are the connector's to set)
COMMON_KEYS = ("timeout_ms", "max_response_bytes", "batch_size", "max_concurrency", "retries",
               "circuit", "tls_verify", "ca_bundle", "health_url", "health_cache_s", "headers")


class Connector(RestAdapter):
    """Base of the vendor connectors; see the module docstring."""

    connector_fields: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        rest_fields = RestOptionsSchema._declared_fields
        fields = {**{k: rest_fields[k] for k in COMMON_KEYS}, **cls.connector_fields}
        own_keys = tuple(cls.connector_fields)

        class ConnectorSchema(Schema):
            class Meta:
                unknown = RAISE

            @post_load(pass_original=True)
            def _preset(self, data, original, **kw):
                given = {k: original[k] for k in COMMON_KEYS if k in original}
                rest = cls.preset({k: data.get(k) for k in own_keys})
                try:
                    return RestOptionsSchema().load({**rest, **given})
                except ValidationError as e:  # a key the user gave, through the preset
                    raise ValidationError(e.messages) from None

        ConnectorSchema._declared_fields = {k: f for k, f in fields.items()}
        ConnectorSchema.__name__ = f"{cls.__name__}Schema"
        cls.options_schema = ConnectorSchema

    @classmethod
    def preset(cls, own: dict) -> dict:
        """The REST options (engine keys included) for the connector's own keys."""
        raise NotImplementedError
