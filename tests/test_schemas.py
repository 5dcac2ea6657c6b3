"""The hot-path parser must accept exactly what the marshmallow schema accepts, and
the bounded error path must word what marshmallow words, first problems first."""
from hypothesis import given, settings, strategies as st

from atp_bridge.errors import MAX_DETAILS, RequestError
from atp_bridge.schemas import AvailabilityRequestSchema, flatten_messages, parse_request, request_error

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


# lists long enough to pass MAX_DETAILS, of good and bad items alike
bad_ids = st.one_of(st.sampled_from(["", None, 1, [], {}, "a"]), json_values)
long_bodies = st.fixed_dictionaries(
    {"products": st.one_of(st.lists(st.one_of(
        st.fixed_dictionaries({"product_id": bad_ids, "external_identifier": bad_ids}), json_values),
        min_size=8, max_size=30), json_values),
     "fulfillment_locations": st.one_of(st.lists(bad_ids, min_size=8, max_size=30), json_values)})


@settings(max_examples=1500, deadline=None)
@given(st.one_of(bodies, long_bodies))
def test_request_error_lists_the_schemas_first_problems_in_order_and_counts_the_rest(body):
    if parse_request(body) is not None:
        return
    every = [{"field": f, "problem": m} for f, m in flatten_messages(SCHEMA.validate(body))]
    err = request_error(body)
    assert err.details == every[:MAX_DETAILS]
    assert err.more_problems == max(0, len(every) - MAX_DETAILS)
    assert err.message == f"{every[0]['field']}: {every[0]['problem']}"


def test_millions_of_bad_items_get_twenty_details_and_a_count_of_the_rest():
    n = 2_621_416
    err = request_error({"products": [1] * n, "fulfillment_locations": ["US01", None, 7]})
    assert err.details == [{"field": f"products.{i}", "problem": "Invalid input type."} for i in range(20)]
    assert err.more_problems == n - 20 + 2  # and the two bad locations, after the products
    assert err.message == "products.0: Invalid input type."


def test_a_product_missing_both_ids_counts_as_two_problems_once_the_details_are_full():
    products = [{"product_id": "p", "external_identifier": ""}] * 20 + [{}] * 3
    err = request_error({"products": products, "fulfillment_locations": ["US01"]})
    assert [d["field"] for d in err.details] == [f"products.{i}.external_identifier" for i in range(20)]
    assert err.more_problems == 6


def test_a_huge_value_is_refused_on_its_type_without_being_echoed():
    huge = "x" * 5_000_000
    err = request_error({"products": huge, "fulfillment_locations": {huge: huge}})
    assert err.details == [{"field": "products", "problem": "Not a valid list."},
                           {"field": "fulfillment_locations", "problem": "Not a valid list."}]
    assert err.more_problems == 0


def test_a_problem_text_that_quotes_the_input_is_cut_to_200_characters(monkeypatch):
    product_id = SCHEMA.fields["products"].inner.schema.fields["product_id"]
    monkeypatch.setitem(product_id.error_messages, "invalid", "Not a string: " + "y" * 10_000)
    err = request_error({"products": [{"product_id": 5, "external_identifier": "e"}],
                         "fulfillment_locations": ["US01"]})
    problem = err.details[0]["problem"]
    assert len(problem) == 200 and problem.startswith("Not a string: yyy") and problem.endswith("...")
    assert len(err.message) < 250


def test_a_request_error_given_too_many_details_keeps_twenty_and_counts_the_rest():
    err = RequestError("x", details=[{"field": str(i), "problem": "p"} for i in range(25)], more_problems=3)
    assert [d["field"] for d in err.details] == [str(i) for i in range(20)]
    assert err.more_problems == 8
