"""The hot-path parser must accept exactly what the marshmallow schema accepts."""
from hypothesis import given, settings, strategies as st

from atp_bridge.schemas import AvailabilityRequestSchema, parse_request, request_error

SCHEMA = AvailabilityRequestSchema()

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.sampled_from(["", "x", "US01", " "]), st.text(max_size=3))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=6)
ids = st.one_of(st.sampled_from(["", "1000061", "a"]), st.text(max_size=4), json_values)
products = st.one_of(
    st.fixed_dictionaries({"product_id": ids, "external_identifier": ids},
                          optional={"extra": json_values}),
    st.fixed_dictionaries({"product_id": ids}),
    st.fixed_dictionaries({"external_identifier": ids}),
    json_values,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"products": st.one_of(st.lists(products, max_size=4), json_values),
         "fulfillment_locations": st.one_of(st.lists(ids, max_size=4), json_values)},
        optional={"other": json_values}),
    st.fixed_dictionaries({"products": st.lists(products, max_size=3)}),
    json_values,
)


@settings(max_examples=3000, deadline=None)
@given(bodies)
def test_parse_request_accepts_exactly_what_the_schema_accepts(body):
    schema_ok = not SCHEMA.validate(body) if isinstance(body, dict) else False
    assert (parse_request(body) is not None) == schema_ok


def test_parse_request_returns_ids_and_locations_in_request_order():
    body = {"products": [{"product_id": "p1", "external_identifier": "e1", "x": 1},
                         {"product_id": "p2", "external_identifier": "e2"}],
            "fulfillment_locations": ["B", "A"], "ignored": True}
    assert parse_request(body) == (["p1", "p2"], ["e1", "e2"], ["B", "A"])


def test_request_error_names_the_field_path_and_problem():
    err = request_error({"products": [{"product_id": "p"}], "fulfillment_locations": ["A", None]})
    fields = {d["field"]: d["problem"] for d in err.details}
    assert fields == {"products.0.external_identifier": "Missing data for required field.",
                      "fulfillment_locations.1": "Field may not be null."}
    assert err.status == 400
