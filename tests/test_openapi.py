"""The OpenAPI document: built from the marshmallow schemas, and the app keeps
its promises (schemathesis generates requests from the document and checks
every answer against it)."""
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from atp_bridge import create_app

KEY = "ns-webhook-key-0123456789abcdef"
VALUES = {"US01": {"1000061": 3, "A": 2.5}, "DC01": {"1000061": -1}}


@pytest.fixture(scope="module")
def app(tmp_path_factory, test_adapter_entry_points):
    path = tmp_path_factory.mktemp("openapi") / "atp-bridge.yaml"
    path.write_text(orjson.dumps({"auth": {"api_keys": [KEY]}, "max_pairs": 50,
                                  "adapters": [{"name": "stock", "type": "static", "values": VALUES}]}).decode())
    return create_app(str(path))


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/openapi.json").get_json()


def test_the_document_covers_every_route_the_app_serves(app, document):
    served = {r.rule for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert served == set(document["paths"])
    assert set(document["paths"]) == {"/availabilities", "/newstore_api/v0/availabilities", "/healthz",
                                      "/readyz", "/metrics", "/openapi.json"}
    assert document["openapi"].startswith("3.")


def test_request_response_and_error_schemas_come_from_marshmallow(document):
    schemas = document["components"]["schemas"]
    req = schemas["AvailabilityRequest"]
    assert set(req["required"]) == {"products", "fulfillment_locations"}
    assert req["properties"]["products"]["minItems"] == 1
    assert schemas["Availability"]["properties"]["atp"] == {"type": "integer", "minimum": 0}
    assert set(schemas["Error"]["required"]) == {"error", "message", "details"}
    op = document["paths"]["/availabilities"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AvailabilityRequest"}
    assert {"200", "400", "401", "413"} <= set(op["responses"])


def test_the_authorization_header_is_the_documented_security_scheme(document):
    scheme = document["components"]["securitySchemes"]["newstoreApiKey"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "Authorization"}
    assert document["paths"]["/availabilities"]["post"]["security"] == [{"newstoreApiKey": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_the_document_is_built_once_at_startup(app):
    c = app.test_client()
    assert c.get("/openapi.json").data is app.extensions["atp_bridge"].openapi or \
        c.get("/openapi.json").data == app.extensions["atp_bridge"].openapi


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(case):
    # half of the webhook calls carry the key, so both 200 and 401 paths are exercised
    headers = {"Authorization": KEY} if len(repr(case.body)) % 2 == 0 else None
    case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance,
                                                    status_code_conformance, content_type_conformance])
