"""The OpenAPI 3 document of the service, from the marshmallow schemas.

apispec's MarshmallowPlugin turns the very schemas the webhook validates with
(:mod:`atp_bridge.schemas`) into components, so the document cannot drift
from the code. :func:`build_openapi` runs once in ``create_app``; the view
serves the bytes.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import orjson
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from atp_bridge.config_types import BridgeConfig
from atp_bridge.schemas import (AvailabilityRequestSchema, AvailabilityResponseSchema, ErrorSchema,
                                HealthSchema, ReadinessSchema)

__all__ = ["build_openapi"]

SECURITY = "newstoreApiKey"
_JSON = "application/json"


def _version() -> str:
    try:
        return version("atp-bridge")
    except PackageNotFoundError:  # running from a source checkout
        return "0.0.0+source"


def _json(schema, description: str, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {_JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


_REQUEST_ID = {"X-Request-ID": {"description": "The caller's request id (printable ASCII, "
                                "at most 128 characters) or a generated one.",
                                "schema": {"type": "string"}}}


def _error(description: str) -> dict:
    return _json("Error", description, _REQUEST_ID)


def _webhook(secured: bool) -> dict:
    op = {
        "summary": "NewStore External Availability Webhook",
        "description": "ATP for every product x fulfillment location pair, product-major in "
                       "request order. Failures of the ATP sources are never an error: the "
                       "answer is then all zeros with the X-ATP-Degraded header.",
        "operationId": "getAvailabilities",
        "requestBody": {"required": True, "content": {_JSON: {"schema": "AvailabilityRequest"}}},
        "responses": {
            "200": _json("AvailabilityResponse", "ATP per pair.", {
                **_REQUEST_ID,
                "X-ATP-Degraded": {"description": "Present when the failure rule zeroed pairs: "
                                   "comma-separated reason:adapter (error|timeout|unavailable), "
                                   "or 'internal'.", "schema": {"type": "string"}}}),
            "400": _error("Invalid JSON or a body that does not match the schema."),
            "413": _error("Body larger than max_body_bytes, or more than max_pairs pairs."),
        },
    }
    if secured:
        op["security"] = [{SECURITY: []}]
        op["responses"]["401"] = _error("Missing or wrong API key.")
    return op


def build_openapi(config: BridgeConfig) -> bytes:
    """The OpenAPI 3.0 document for ``config`` (its base path, its auth), as JSON bytes."""
    spec = APISpec(
        title="atp-bridge", version=_version(), openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "NewStore External Availability Webhook (Tier-2 OMS) answering "
                             "from the retailer's ATP sources."})
    for name, schema in (("AvailabilityRequest", AvailabilityRequestSchema),
                         ("AvailabilityResponse", AvailabilityResponseSchema),
                         ("Error", ErrorSchema), ("Health", HealthSchema),
                         ("Readiness", ReadinessSchema)):
        spec.components.schema(name, schema=schema)
    spec.components.security_scheme(SECURITY, {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "NewStore's webhook API key, raw or as 'Bearer <key>'."})
    secured = bool(config.api_keys)  # an open service (no api_keys) documents no security
    paths = ["/availabilities"]
    if config.base_path:
        paths.append(f"{config.base_path}/availabilities")
    for path in paths:
        spec.path(path=path, operations={"post": _webhook(secured)})
    spec.path(path="/healthz", operations={"get": {
        "summary": "Liveness: 200 while the process serves.", "operationId": "healthz",
        "responses": {"200": _json("Health", "Alive.", _REQUEST_ID)}}})
    spec.path(path="/readyz", operations={"get": {
        "summary": "Readiness: 200 when every adapter is healthy, else 503.", "operationId": "readyz",
        "responses": {"200": _json("Readiness", "Ready.", _REQUEST_ID),
                      "503": _json("Readiness", "Not ready; see the adapter that is not ok.",
                                   _REQUEST_ID)}}})
    spec.path(path="/metrics", operations={"get": {
        "summary": "Prometheus metrics (text exposition format), merged across workers.",
        "operationId": "metrics",
        "responses": {"200": {"description": "Metrics.", "headers": _REQUEST_ID,
                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    spec.path(path="/openapi.json", operations={"get": {
        "summary": "This document.", "operationId": "openapi",
        "responses": {"200": {"description": "OpenAPI 3 document.", "headers": _REQUEST_ID,
                              "content": {_JSON: {"schema": {"type": "object"}}}}}}})
    return orjson.dumps(spec.to_dict())
