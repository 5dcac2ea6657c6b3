"""REST adapter auth against a real ERP stand-in, and secrets kept out of messages and logs."""
import base64
import logging
import threading
import time

import orjson
import pytest

from atp_bridge import create_app
from atp_bridge.config import load_config
from atp_bridge.errors import AdapterError, ConfigError
from tests.adapters.conftest import batch
from tests.vendors.netsuite import public_key, write_key

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


# -- where the token goes: header / prefix ---------------------------------------------

def test_a_bearer_token_can_go_raw_in_its_own_header(erp, rest):
    erp.stock, erp.expect_header = {("A", "S1"): 4}, ("X-Shopify-Access-Token", TOKEN)
    adapter = rest(auth={"type": "bearer", "token": TOKEN, "header": "X-Shopify-Access-Token", "prefix": ""})
    assert adapter.fetch(batch("A", ["S1"])) == [4]
    (call,) = erp.requests()
    assert call.headers["x-shopify-access-token"] == TOKEN and "authorization" not in call.headers


def test_an_oauth2_token_goes_in_the_configured_header_with_its_prefix(erp, rest):
    erp.stock, erp.expect_header = {("A", "S1"): 4}, ("X-Access-Token", "Token tok-1")
    adapter = rest(auth=oauth2(erp, header="X-Access-Token", prefix="Token "))
    assert adapter.fetch(batch("A", ["S1"])) == [4]
    assert [c.headers["x-access-token"] for c in erp.requests()] == ["Token tok-1"]


@pytest.mark.parametrize("auth,headers,problem", [
    ({"type": "bearer", "token": "t", "header": "X-Shopify-Access-Token", "prefix": ""},
     {"x-shopify-access-token": "v"}, "adapters[0].headers.x-shopify-access-token: Set by auth as well"),
    ({"type": "bearer", "token": "t", "prefix": "Bearer\r\nX-Evil: 1 "}, {},
     "adapters[0].auth.prefix: Must not hold a line break or control character."),
    ({"type": "bearer", "token": "t", "header": "X Token"}, {}, "adapters[0].auth.header: Must be an HTTP header name"),
])
def test_bad_token_placement_is_reported_at_its_key(config_file, auth, headers, problem):
    path = config_file({"adapters": [{"name": "erp", "type": "rest", "url": "http://erp:8080/atp",
                                      "auth": auth, "headers": headers}]})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.startswith(f"{path}: {problem}") for p in exc.value.problems] == [True], exc.value.problems


def test_a_custom_token_header_leaves_authorization_free_for_static_headers(config_file):
    path = config_file({"adapters": [{"name": "erp", "type": "rest", "url": "http://erp:8080/atp",
                                      "auth": {"type": "bearer", "token": "t", "header": "X-Token"},
                                      "headers": {"Authorization": "Basic abc"}}]})
    assert load_config(path).adapters[0].options["auth"].header == "X-Token"


# -- client_auth: private_key_jwt (RFC 7523) ------------------------------------------------

def jwt_idp(public_key, client_id="client-jwt-1", kid="key-1"):
    """``respond`` for an IdP at /idp/token that takes a signed client assertion,
    and an ATP endpoint that takes only the token it issued."""
    import jwt

    def respond(erp, seen):
        if seen.path == "/idp/token":
            form = seen.form()
            header = jwt.get_unverified_header(form.get("client_assertion", ""))
            try:
                claims = jwt.decode(form["client_assertion"], public_key, algorithms=[header["alg"]],
                                    audience=f"{erp.url}/idp/token", options={"require": ["iss", "exp", "iat"]})
            except jwt.PyJWTError as e:
                return 400, {"error": "invalid_client", "error_description": type(e).__name__}
            erp.assertions.append((header, claims, form))
            if claims["iss"] != client_id or header.get("kid") != kid:
                return 400, {"error": "invalid_client", "error_description": "unknown client or key"}
            return 200, {"access_token": f"jwt-tok-{len(erp.assertions)}", "expires_in": "3600"}
        if seen.headers.get("authorization") != f"Bearer jwt-tok-{len(erp.assertions)}":
            return 401, {"error": "invalid_token"}
        return 200, {"items": [{"product": "A", "location": "S1", "atp": 6}]}
    return respond


def jwt_auth(erp, key_path, **extra):
    return {"type": "oauth2_client_credentials", "token_url": f"{erp.url}/idp/token", "client_id": "client-jwt-1",
            "client_auth": "private_key_jwt", "private_key": str(key_path), "key_id": "key-1", **extra}


@pytest.mark.parametrize("kind,algorithm,expected", [
    ("rsa", None, "PS256"), ("rsa", "RS256", "RS256"), ("rsa", "PS512", "PS512"),
    ("ec", None, "ES256"), ("ec521", None, "ES512"),
])
def test_private_key_jwt_sends_a_signed_assertion_instead_of_a_secret(erp, rest, tmp_path, kind, algorithm,
                                                                       expected):
    key = write_key(tmp_path / "client.pem", kind)
    erp.assertions, erp.respond = [], jwt_idp(public_key(key))
    extra = {"algorithm": algorithm} if algorithm else {}
    adapter = rest(auth=jwt_auth(erp, key, scope="atp.read", **extra))
    assert adapter.fetch(batch("A", ["S1"])) == [6]
    ((header, claims, form),) = erp.assertions
    assert header == {"alg": expected, "typ": "JWT", "kid": "key-1"}
    assert {k: claims[k] for k in ("iss", "aud", "scope")} == {
        "iss": "client-jwt-1", "aud": f"{erp.url}/idp/token", "scope": "atp.read"}
    assert claims["exp"] - claims["iat"] == 300
    assert sorted(form) == ["client_assertion", "client_assertion_type", "grant_type"]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_private_key_jwt_signs_a_new_assertion_for_the_token_after_a_401(erp, rest, tmp_path):
    key = write_key(tmp_path / "client.pem", "ec")
    erp.assertions, erp.respond = [], jwt_idp(public_key(key))
    adapter = rest(auth=jwt_auth(erp, key))
    assert adapter.fetch(batch("A", ["S1"])) == [6]
    erp.assertions.append(("forgotten", {}, {}))  # the IdP moves on: jwt-tok-1 is now refused
    assert adapter.fetch(batch("A", ["S1"])) == [6]
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer jwt-tok-1", "Bearer jwt-tok-1",
                                                                   "Bearer jwt-tok-3"]
    first, second = erp.assertions[0][2]["client_assertion"], erp.assertions[2][2]["client_assertion"]
    assert first != second and len(erp.requests("/idp/token")) == 2


def test_a_refused_assertion_is_an_auth_error_that_never_shows_it(erp, rest, tmp_path):
    key, other = write_key(tmp_path / "client.pem", "rsa"), write_key(tmp_path / "other.pem", "rsa")
    erp.assertions, erp.respond = [], jwt_idp(public_key(other))  # the IdP knows another key
    adapter = rest(auth=jwt_auth(erp, key))
    with pytest.raises(AdapterError) as exc:
        adapter.fetch(batch("A", ["S1"]))
    assert "auth: token endpoint answered HTTP 400:" in str(exc.value) and "InvalidSignatureError" in str(exc.value)
    (token_call,) = erp.requests("/idp/token")
    assertion = token_call.form()["client_assertion"]
    for text in (str(exc.value), adapter.stats()["last_error"], repr(adapter.auth)):
        assert assertion not in text and key.read_text().splitlines()[1] not in text


@pytest.mark.parametrize("auth,problem", [
    ({"client_auth": "private_key_jwt"}, "auth.private_key: Missing data for required field."),
    ({"client_auth": "private_key_jwt", "private_key": "k.pem", "client_secret": "s"},
     "auth.client_secret: Not used with client_auth: private_key_jwt"),
    ({"client_secret": "s", "private_key": "k.pem"}, "auth.private_key: Only with client_auth: private_key_jwt."),
    ({"client_auth": "private_key_jwt", "private_key": "k.pem", "algorithm": "HS256"},
     "auth.algorithm: Must be one of: PS256, PS384, PS512, ES256"),
    ({"client_auth": "private_key_jwt", "private_key": "keys/k.pem"}, "auth.private_key: no such file "),
    ({"client_auth": "private_key_jwt", "private_key": "rsa.pem", "algorithm": "ES256"},
     "auth.private_key: {dir}/rsa.pem holds an RSA key: algorithm ES256 needs an EC key (use PS256)"),
    ({"client_auth": "private_key_jwt", "private_key": "ec.pem", "algorithm": "ES384"},
     "auth.private_key: {dir}/ec.pem holds an EC key on secp256r1: it signs ES256, not ES384"),
    ({"client_auth": "private_key_jwt", "private_key": "locked.pem"},
     "auth.private_key: {dir}/locked.pem holds an encrypted private key"),
])
def test_private_key_jwt_problems_are_reported_with_file_and_key(config_file, tmp_path, auth, problem):
    from cryptography.hazmat.primitives import serialization

    write_key(tmp_path / "rsa.pem", "rsa")
    ec_key = write_key(tmp_path / "ec.pem", "ec")
    locked = serialization.load_pem_private_key(ec_key.read_bytes(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase-0008"))
    (tmp_path / "locked.pem").write_bytes(locked)
    path = config_file({"adapters": [{"name": "erp", "type": "rest", "url": "http://erp:8080/atp", "auth": {
        "type": "oauth2_client_credentials", "token_url": "https://idp/token", "client_id": "c", **auth}}]})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    expected = f"{path}: adapters[0].{problem.format(dir=tmp_path)}"
    assert [p.startswith(expected) for p in exc.value.problems] == [True], exc.value.problems
