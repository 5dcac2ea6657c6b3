"""REST adapter auth against a real ERP stand-in, and secrets kept out of messages and logs."""
import base64
import logging
import threading
import time

import orjson
import pytest

from atp_bridge import create_app
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError
from tests.adapters.conftest import batch

TOKEN, PASSWORD, KEY = "bearer-secret-0001", "pass-secret-0002", "header-secret-0003"


@pytest.mark.parametrize("auth,header", [
    ({"type": "bearer", "token": TOKEN}, ("Authorization", f"Bearer {TOKEN}")),
    ({"type": "basic", "username": "bridge", "password": PASSWORD},
     ("Authorization", "Basic " + base64.b64encode(f"bridge:{PASSWORD}".encode()).decode())),
    ({"type": "header", "name": "X-Api-Key", "value": KEY}, ("X-Api-Key", KEY)),
])
def test_static_credentials_are_sent_on_every_call(erp, rest, auth, header):
    erp.stock, erp.expect_header = {("A", "S1"): 8}, header
    adapter = rest(auth=auth, batch_size=1)
    assert adapter.fetch(batch("AB", ["S1"])) == [8, None]
    assert [c.headers[header[0].lower()] for c in erp.requests()] == [header[1]] * 2


def test_wrong_static_credentials_are_an_error_pointing_at_auth(erp, rest):
    erp.expect_header = ("Authorization", "Bearer right")
    with pytest.raises(AdapterError, match=r"HTTP 401 \(check the adapter's auth\)"):
        rest(auth={"type": "bearer", "token": "wrong"}).fetch(batch("A", ["S1"]))
    assert len(erp.requests()) == 1  # a static token is not "refreshed"


def oauth2(erp, **extra):
    return {"type": "oauth2_client_credentials", "token_url": f"{erp.url}/token",
            "client_id": erp.client[0], "client_secret": erp.client[1], **extra}


def test_oauth2_fetches_one_token_and_reuses_it_across_requests(erp, rest):
    erp.stock = {("A", "S1"): 2}
    adapter = rest(auth=oauth2(erp, scope="atp.read"))
    for _ in range(3):
        assert adapter.fetch(batch("A", ["S1"])) == [2]
    token_calls = erp.requests("/token")
    assert len(token_calls) == 1 and token_calls[0].form() == {
        "grant_type": "client_credentials", "client_id": "client-1",
        "client_secret": "client-secret-1", "scope": "atp.read"}
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer tok-1"] * 3
    assert adapter.stats()["token_fetches"] == 1


def test_oauth2_can_authenticate_the_client_with_http_basic(erp, rest):
    erp.stock = {("A", "S1"): 2}
    adapter = rest(auth=oauth2(erp, client_auth="basic"))
    assert adapter.fetch(batch("A", ["S1"])) == [2]
    token_call = erp.requests("/token")[0]
    assert "client_secret" not in token_call.form() and token_call.headers["authorization"].startswith("Basic ")


def test_oauth2_refreshes_the_token_once_on_a_401_and_retries_the_call(erp, rest):
    erp.stock = {("A", "S1"): 2}
    adapter = rest(auth=oauth2(erp))
    assert adapter.fetch(batch("A", ["S1"])) == [2]
    erp.revoke_tokens()  # the ERP forgets tok-1 early
    assert adapter.fetch(batch("A", ["S1"])) == [2]
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer tok-1", "Bearer tok-1",
                                                                   "Bearer tok-2"]
    assert len(erp.requests("/token")) == 2


def test_oauth2_gives_up_after_one_refresh(erp, rest):
    erp.expect_header = ("Authorization", "Bearer never-valid")
    with pytest.raises(AdapterError, match="HTTP 401"):
        rest(auth=oauth2(erp)).fetch(batch("A", ["S1"]))
    assert (len(erp.requests()), len(erp.requests("/token"))) == (2, 2)


def test_oauth2_fetches_a_new_token_shortly_before_expiry(erp, rest):
    erp.stock, erp.token_lifetime_s = {("A", "S1"): 2}, 0.4  # usable for max(0.4 - 30, 0.2) s
    adapter = rest(auth=oauth2(erp))
    adapter.fetch(batch("A", ["S1"]))
    adapter.fetch(batch("A", ["S1"]))
    time.sleep(0.3)
    adapter.fetch(batch("A", ["S1"]))
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer tok-1"] * 2 + ["Bearer tok-2"]


def test_concurrent_first_requests_share_one_token_fetch(erp, rest):
    erp.stock, erp.token_delay_s = {("A", "S1"): 2}, 0.2
    adapter = rest(auth=oauth2(erp))
    results, start = [], threading.Barrier(6)

    def ask():
        start.wait()
        results.append(adapter.fetch(batch("A", ["S1"])))
    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[2]] * 6 and len(erp.requests("/token")) == 1


def test_a_refused_client_is_an_auth_error_without_the_secret(erp, rest):
    auth = {**oauth2(erp), "client_secret": "wrong-secret-0004"}
    with pytest.raises(AdapterError) as exc:
        rest(auth=auth).fetch(batch("A", ["S1"]))
    assert "auth: token endpoint answered HTTP 401" in str(exc.value)
    assert "wrong-secret-0004" not in str(exc.value) and erp.requests() == []


def echo_headers(erp, seen):
    """A careless ERP that puts the request's headers in its error body."""
    creds = {k: v for k, v in seen.headers.items() if k in ("authorization", "x-api-key")}
    return 500, orjson.dumps({"error": "boom", "request_headers": creds})


@pytest.mark.parametrize("auth,secrets", [
    ({"type": "bearer", "token": "${ERP_SECRET}"}, ["s3cr3t-value-0005"]),
    ({"type": "basic", "username": "u", "password": "${ERP_SECRET}"},
     ["s3cr3t-value-0005", base64.b64encode(b"u:s3cr3t-value-0005").decode()]),
    ({"type": "header", "name": "X-Api-Key", "value": "${ERP_SECRET}"}, ["s3cr3t-value-0005"]),
    ("oauth2", ["s3cr3t-value-0005", "tok-1"]),
])
def test_secrets_never_appear_in_errors_logs_or_reprs(erp, config_file, caplog, monkeypatch, auth, secrets):
    monkeypatch.setenv("ERP_SECRET", "s3cr3t-value-0005")
    if auth == "oauth2":
        erp.client = ("client-1", "s3cr3t-value-0005")
        auth = {**oauth2(erp), "client_secret": "${ERP_SECRET}"}
    erp.respond = echo_headers
    path = str(config_file({"deadline_ms": 2000, "adapters": [
        {"name": "erp", "type": "rest", "url": f"{erp.url}/atp", "auth": auth,
         "headers": {"X-Tenant-Key": "tenant-secret-0007"},
         "circuit": {"failure_threshold": 1, "reset_s": 30}}]}))
    with caplog.at_level(logging.DEBUG):
        app = create_app(path)
        resp = app.test_client().post("/availabilities", json={
            "products": [{"product_id": "A", "external_identifier": "A"}], "fulfillment_locations": ["S1"]})
        adapter = app.extensions["atp_bridge"].bridge.adapters[0]
        stats = adapter.stats()
    assert resp.headers["X-ATP-Degraded"] == "error:erp"
    assert "HTTP 500" in stats["last_error"] and "***" in stats["last_error"]
    assert stats["circuit"] == "open"  # the open-circuit log line carries the error too
    seen = [caplog.text, stats["last_error"], repr(adapter), repr(adapter.auth),
            repr(load_config(path)), repr(load_config(path).adapters[0])]
    for text in seen:
        for secret in [*secrets, "tenant-secret-0007"]:
            assert secret not in text
    assert "degraded answer" in caplog.text and "HTTP 500" in caplog.text
