"""The REST ERP adapter against a real HTTP server: calls, wire formats, time, failures."""
import time

import pytest

from atp_bridge import create_app
from atp_bridge.errors import AdapterError, AdapterTimeout, AdapterUnavailable
from tests.adapters.conftest import batch, closed_port

STOCK = {(p, loc): 10 * i + j for i, p in enumerate("ABCDEFGH") for j, loc in enumerate(["S1", "S2", "S3"])}


@pytest.mark.parametrize("products,locations,sizes", [
    ("A", ["S1"], [1]),                    # 1 pair
    ("AB", ["S1", "S2"], [4]),             # exactly batch_size
    ("ABCDE", ["S1"], [4, 1]),             # batch_size + 1
])
def test_a_batch_becomes_ceil_pairs_over_batch_size_calls(erp, rest, products, locations, sizes):
    erp.stock = STOCK
    adapter = rest(batch_size=4)
    got = adapter.fetch(batch(products, locations))
    calls = erp.requests()
    assert sorted(len(c.json()["items"]) for c in calls) == sorted(sizes)
    sent = [(i["product"], i["location"]) for c in calls for i in c.json()["items"]]
    expected_pairs = [(p, loc) for p in products for loc in locations]
    assert sorted(sent) == sorted(expected_pairs)
    assert got == [STOCK[pair] for pair in expected_pairs]
    assert adapter.stats()["calls"] == len(sizes)


def test_calls_of_one_request_run_concurrently_up_to_max_concurrency(erp, rest):
    erp.stock, erp.mode, erp.slow_s = STOCK, "slow", 0.2
    adapter = rest(batch_size=1, max_concurrency=3)
    got = adapter.fetch(batch("ABCDEFGH", ["S1"]))
    assert got == [STOCK[(p, "S1")] for p in "ABCDEFGH"]
    assert len(erp.requests()) == 8 and erp.max_in_flight == 3


def test_calls_share_kept_alive_connections_of_one_session(erp, rest):
    erp.stock = STOCK
    adapter = rest(max_concurrency=1)
    for _ in range(5):
        assert adapter.fetch(batch("A", ["S1"])) == [0]
    assert len({c.client_port for c in erp.requests()}) == 1


def test_pairs_the_erp_leaves_out_or_answers_null_are_unknown(erp, rest):
    erp.respond = lambda erp, seen: (200, {"items": [
        {"product": "A", "location": "S1", "atp": 3}, {"product": "A", "location": "S2", "atp": None},
        {"product": "Z", "location": "S1", "atp": 99}]})
    assert rest().fetch(batch("AB", ["S1", "S2"])) == [3, None, None, None]


def test_the_default_wire_format_posts_items_and_reads_items(erp, rest):
    erp.stock = {("A", "S1"): 4, ("B", "S2"): 1}
    got = rest().fetch(batch("AB", ["S1", "S2"]))
    call = erp.requests()[0]
    assert (call.method, call.headers["content-type"]) == ("POST", "application/json")
    assert call.json() == {"items": [{"product": "A", "location": "S1"}, {"product": "A", "location": "S2"},
                                     {"product": "B", "location": "S1"}, {"product": "B", "location": "S2"}]}
    assert got == [4, None, None, 1]


def test_renamed_pair_fields_and_extra_body_fields_go_out_as_configured(erp, rest):
    erp.respond = lambda erp, seen: (200, {"items": [
        {"product": i["sku"], "location": i["site"], "atp": 2} for i in seen.json()["lines"]]})
    adapter = rest(request={"items": "lines", "product": "sku", "location": "site",
                            "extra": {"company": "ACME"}})
    assert adapter.fetch(batch("A", ["S1"])) == [2]
    assert erp.requests()[0].json() == {"company": "ACME", "lines": [{"sku": "A", "site": "S1"}]}


def test_grid_style_sends_products_and_locations_and_reads_dotted_paths(erp, rest):
    def respond(erp, seen):
        body = seen.json()
        return 200, {"result": {"rows": [{"item": {"sku": p}, "site": loc, "qty": {"available": "7.000"}}
                                         for p in body["skus"] for loc in body["sites"]]}}
    erp.respond = respond
    adapter = rest(batch_size=4, request={"style": "grid", "products": "skus", "locations": "sites"},
                   response={"items": "result.rows", "product": "item.sku", "location": "site",
                             "atp": "qty.available"})
    got = adapter.fetch(batch("ABC", ["S1", "S2", "S3"]))
    # 4 // 3 locations = 1 product per call
    assert sorted((c.json() for c in erp.requests()), key=lambda b: b["skus"]) == [
        {"skus": [p], "sites": ["S1", "S2", "S3"]} for p in "ABC"]
    assert got == [7.0] * 9


def test_query_style_gets_comma_lists_and_reads_a_bare_list(erp, rest):
    def respond(erp, seen):
        return 200, [{"p": p, "l": loc, "n": 1} for p in seen.query["sku"].split(",")
                     for loc in seen.query["store"].split(",")]
    erp.respond = respond
    adapter = rest(request={"style": "query", "products_param": "sku", "locations_param": "store"},
                   response={"items": "", "product": "p", "location": "l", "atp": "n"})
    assert adapter.method == "GET"
    assert adapter.fetch(batch("AB", ["S1", "S2"])) == [1, 1, 1, 1]
    call = erp.requests()[0]
    assert (call.method, call.query, call.body) == ("GET", {"sku": "A,B", "store": "S1,S2"}, b"")


def test_numeric_product_ids_in_the_answer_match_the_string_ids_asked(erp, rest):
    erp.respond = lambda erp, seen: (200, {"items": [{"product": 1000061, "location": "US01", "atp": 5}]})
    assert rest().fetch(batch(["1000061"], ["US01"])) == [5]


@pytest.mark.parametrize("mode,answer,message", [
    ("garbage", None, "answer is not JSON"),
    ("ok", {"items": {"product": "A"}}, "answer has no list at 'items'"),
    ("ok", {"rows": []}, "answer has no list at 'items'"),
    ("ok", {"items": [{"location": "S1", "atp": 1}]}, "item 0: no string at 'product'"),
    ("ok", {"items": [{"product": "A", "location": "S1", "atp": "lots"}]}, "not a finite number"),
    ("ok", {"items": [{"product": "A", "location": "S1", "atp": "NaN"}]}, "not a finite number"),
    ("ok", {"items": [{"product": "A", "location": "S1", "atp": True}]}, "no number at 'atp'"),
    ("ok", {"items": [{"product": "A", "location": "S1"}]}, "no number at 'atp'"),
    ("error", None, "HTTP 500"),
])
def test_a_wrong_answer_is_an_adapter_error_naming_the_cause(erp, rest, mode, answer, message):
    erp.mode = mode
    erp.respond = lambda erp, seen: (200, answer)
    with pytest.raises(AdapterError) as exc:
        rest().fetch(batch("A", ["S1"]))
    assert exc.value.adapter == "erp" and message in str(exc.value)
    assert f"POST {erp.url}/atp" in str(exc.value)


def test_error_messages_quote_at_most_200_characters_of_the_body(erp, rest):
    erp.mode, erp.error_body = "error", b"x" * 5000
    with pytest.raises(AdapterError) as exc:
        rest().fetch(batch("A", ["S1"]))
    quoted = str(exc.value).split("HTTP 500: ", 1)[1]
    assert len(quoted) == 200 and quoted.endswith("...")


def test_503_then_ok_is_retried_once_by_default(erp, rest):
    erp.stock = {("A", "S1"): 6}
    erp.fail_next(1, 503)
    adapter = rest()
    assert adapter.fetch(batch("A", ["S1"])) == [6]
    assert len(erp.requests()) == 2 and adapter.stats()["retries"] == 1


@pytest.mark.parametrize("status", [500, 404])
def test_other_http_errors_are_not_retried(erp, rest, status):
    erp.fail_next(1, status)
    with pytest.raises(AdapterError, match=f"HTTP {status}: upstream busy"):
        rest(retries=3).fetch(batch("A", ["S1"]))
    assert len(erp.requests()) == 1


def test_retries_stop_at_the_deadline(erp, rest):
    erp.fail_next(100, 503)
    adapter = rest(retries=10)
    started = time.monotonic()
    with pytest.raises(AdapterError, match=r"HTTP 503 after \d attempts") as exc:
        adapter.fetch(batch("A", ["S1"], seconds=0.5))
    elapsed = time.monotonic() - started
    # backoff 50, 100, 200 ms: attempts at 0, 0.05, 0.15, 0.35 s; the next (0.75 s) is past the deadline
    assert 2 <= len(erp.requests()) <= 4 and elapsed < 0.5 + 0.3
    assert f"after {len(erp.requests())} attempts" in str(exc.value)


def test_a_dropped_connection_is_retried_then_reported(erp, rest):
    erp.mode = "drop"
    with pytest.raises(AdapterError, match="connection closed by the ERP without an answer after 2 attempts"):
        rest().fetch(batch("A", ["S1"]))
    assert len(erp.requests()) == 2


def test_connection_refused_fails_fast(rest):
    adapter = rest(url=f"http://127.0.0.1:{closed_port()}/atp")
    started = time.monotonic()
    with pytest.raises(AdapterError, match="connection refused after 2 attempts"):
        adapter.fetch(batch("A", ["S1"], seconds=10))
    assert time.monotonic() - started < 0.5  # one 50 ms backoff, no connect timeout wait


def test_a_hanging_erp_times_out_at_the_batch_deadline(erp, rest):
    erp.mode = "hang"
    started = time.monotonic()
    with pytest.raises(AdapterTimeout, match="no answer"):
        rest(timeout_ms=10_000).fetch(batch("A", ["S1"], seconds=0.3))
    assert 0.25 < time.monotonic() - started < 1.0


def test_a_hanging_erp_gets_newstore_an_all_zero_answer_within_the_deadline(erp, config_file):
    erp.mode = "hang"
    app = create_app(str(config_file({"deadline_ms": 300, "adapters": [
        {"name": "erp", "type": "rest", "url": f"{erp.url}/atp", "timeout_ms": 10_000}]})))
    body = {"products": [{"product_id": p, "external_identifier": p} for p in "AB"],
            "fulfillment_locations": ["S1", "S2"]}
    started = time.monotonic()
    resp = app.test_client().post("/availabilities", json=body)
    elapsed = time.monotonic() - started
    assert resp.headers["X-ATP-Degraded"] == "timeout:erp"
    assert [r["atp"] for r in resp.get_json()["availabilities"]] == [0, 0, 0, 0]
    assert elapsed < 0.300 + 0.100, f"answered after {elapsed * 1000:.0f} ms"


def test_the_circuit_opens_after_repeated_failures_and_answers_at_once(erp, rest):
    erp.mode = "error"
    adapter = rest(circuit={"failure_threshold": 2, "reset_s": 30})
    for _ in range(2):
        with pytest.raises(AdapterError, match="HTTP 500"):
            adapter.fetch(batch("A", ["S1"]))
    with pytest.raises(AdapterUnavailable, match="circuit open"):
        adapter.fetch(batch("A", ["S1"]))
    assert len(erp.requests()) == 2  # refused at once: the call never reached the ERP
    assert adapter.health().as_dict() == {"ok": False, "detail": "circuit open", "circuit": "open", "calls": 2}


def test_the_circuit_lets_one_probe_through_after_reset_and_closes_on_success(erp, rest):
    erp.mode, erp.stock = "error", {("A", "S1"): 3}
    adapter = rest(circuit={"failure_threshold": 1, "reset_s": 0.2})
    with pytest.raises(AdapterError):
        adapter.fetch(batch("A", ["S1"]))
    with pytest.raises(AdapterUnavailable):
        adapter.fetch(batch("A", ["S1"]))
    time.sleep(0.25)
    assert adapter.circuit.state == "half_open"
    with pytest.raises(AdapterError, match="HTTP 500"):  # the probe fails: open again
        adapter.fetch(batch("A", ["S1"]))
    assert adapter.circuit.state == "open"
    time.sleep(0.25)
    erp.mode = "ok"
    assert adapter.fetch(batch("A", ["S1"])) == [3]  # the probe succeeds: closed
    assert adapter.circuit.state == "closed" and adapter.stats()["circuit_opened"] == 2
    assert len(erp.requests()) == 3


def test_an_open_circuit_on_a_refused_connection_answers_in_microseconds(rest):
    adapter = rest(url=f"http://127.0.0.1:{closed_port()}/atp", retries=0,
                   circuit={"failure_threshold": 3, "reset_s": 30})
    for _ in range(3):
        with pytest.raises(AdapterError, match="connection refused"):
            adapter.fetch(batch("A", ["S1"]))
    started = time.perf_counter()
    with pytest.raises(AdapterUnavailable):
        adapter.fetch(batch("A", ["S1"]))
    assert time.perf_counter() - started < 0.01
    assert adapter.stats()["last_error"].endswith("connection refused")


def test_health_without_health_url_reports_the_circuit(rest):
    assert rest().health().as_dict() == {"ok": True, "detail": "circuit closed", "circuit": "closed", "calls": 0}


def test_health_url_is_asked_at_most_once_per_health_cache_s(erp, rest):
    adapter = rest(health_url=f"{erp.url}/health", health_cache_s=0.3)
    first = [adapter.health() for _ in range(3)]
    assert [h.ok for h in first] == [True] * 3 and len(erp.requests("/health")) == 1
    assert first[0].detail == f"GET {erp.url}/health: HTTP 200"
    erp.health_status = 503
    assert adapter.health().ok is True  # still the cached answer
    time.sleep(0.35)
    later = adapter.health()
    assert (later.ok, later.info["status"]) == (False, 503) and len(erp.requests("/health")) == 2


def test_health_url_unreachable_is_unhealthy_with_the_cause(rest):
    adapter = rest(health_url=f"http://127.0.0.1:{closed_port()}/health")
    health = adapter.health()
    assert health.ok is False and health.detail.endswith("/health: connection refused")


@pytest.fixture
def tls_erp(tmp_path):
    """The ERP over https with a self-signed certificate for 127.0.0.1."""
    import ssl
    import subprocess
    cert, key = tmp_path / "erp-ca.pem", tmp_path / "erp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    from tests.erp_server import FakeErp
    with FakeErp(ssl_context=context) as server:
        server.stock, server.cert = {("A", "S1"): 9}, str(cert)
        yield server


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_is_verified_against_ca_bundle_and_refused_without_it(tls_erp, rest):
    url = f"{tls_erp.url}/atp"
    assert rest(url=url, ca_bundle=tls_erp.cert).fetch(batch("A", ["S1"])) == [9]
    assert rest(url=url, tls_verify=False).fetch(batch("A", ["S1"])) == [9]
    with pytest.raises(AdapterError, match="TLS error: .*CERTIFICATE_VERIFY_FAILED"):
        rest(url=url, retries=0).fetch(batch("A", ["S1"]))
    assert len(tls_erp.requests()) == 2
