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


# -- auth.exchange: the first token traded for the one the ERP takes ------------------------------

def exchanging(erp, seen):
    """``/exchange`` trades a token of FakeErp's ``/token`` (in the form, and as the
    bearer) for ``x-<n>``; ``/moved`` and ``/hop<n>`` redirect; ``/atp`` takes only an ``x-`` token."""
    from tests.erp_server import default_respond
    if seen.path == "/moved":
        return 307, b"", {"Location": "/exchange"}
    if seen.path.startswith("/hop"):
        n = int(seen.path[4:])
        return 308, b"", {"Location": f"{erp.url}/hop{n + 1}"}
    if seen.path == "/exchange":
        form = seen.form()
        subject = form.get("subject_token")
        if seen.method != "POST" or subject not in erp.valid_tokens or seen.headers.get("authorization") != \
                f"Bearer {subject}" or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return 401, {"error": "invalid_grant", "error_description": f"cannot trade {subject}"}
        erp.exchanged = getattr(erp, "exchanged", 0) + 1
        token = f"x-{erp.exchanged}"
        erp.x_tokens = getattr(erp, "x_tokens", set()) | {token}
        return 200, {"result": {"token": token, "ttl": getattr(erp, "x_lifetime", 60)}}
    if seen.headers.get("authorization", "")[7:] not in getattr(erp, "x_tokens", set()):
        return 401, b""
    return default_respond(erp, seen)


def exchange(erp, url="/exchange", **extra):
    return {**oauth2(erp), "exchange": {
        "url": f"{erp.url}{url}", "encoding": "form",
        "headers": {"Authorization": "Bearer {{ token }}"},
        "body": {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": "{{ token }}",
                 "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"},
        "token_path": "result.token", "expires_path": "result.ttl", **extra}}


def test_oauth2_exchange_trades_the_token_and_sends_the_second_one(erp, rest):
    erp.stock, erp.respond = {("A", "S1"): 2}, exchanging
    adapter = rest(auth=exchange(erp))
    for _ in range(2):
        assert adapter.fetch(batch("A", ["S1"])) == [2]
    (traded,) = erp.requests("/exchange")
    assert traded.headers["content-type"] == "application/x-www-form-urlencoded"
    assert traded.form() == {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                             "subject_token": "tok-1",
                             "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer x-1"] * 2
    assert len(erp.requests("/token")) == 1 and adapter.stats()["token_fetches"] == 1


def test_oauth2_exchange_sends_a_json_body_by_default(erp, rest):
    erp.stock = {("A", "S1"): 2}

    def json_exchange(erp, seen):
        if seen.path == "/exchange":
            body = seen.json()
            ok = seen.headers["content-type"] == "application/json" and body == {
                "assertion": "tok-1", "nested": {"kept": ["a", 1, True]}, "context": "env-1"}
            return (200, {"access_token": "x-1", "expires_in": 3600}) if ok else (400, {"error": "bad"})
        erp.x_tokens = {"x-1"}
        return exchanging(erp, seen)
    erp.respond = json_exchange
    auth = {**oauth2(erp), "exchange": {"url": f"{erp.url}/exchange", "headers": {"Api-Version": "1.0"},
                                        "body": {"assertion": "{{ token }}", "nested": {"kept": ["a", 1, True]},
                                                 "context": "env-1"}}}
    assert rest(auth=auth).fetch(batch("A", ["S1"])) == [2]
    assert erp.requests("/exchange")[0].headers["api-version"] == "1.0"


def test_oauth2_exchange_follows_a_307_and_a_308_with_the_same_post(erp, rest):
    erp.stock, erp.respond = {("A", "S1"): 2}, exchanging
    assert rest(auth=exchange(erp, url="/moved")).fetch(batch("A", ["S1"])) == [2]
    moved, traded = erp.requests("/moved")[0], erp.requests("/exchange")[0]
    assert (moved.method, moved.body, moved.headers["authorization"]) == \
        (traded.method, traded.body, traded.headers["authorization"])
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer x-1"]


def test_oauth2_exchange_gives_up_after_three_redirects(erp, rest):
    erp.respond = exchanging
    with pytest.raises(AdapterError, match=r"auth: token exchange \(POST http://127\.0\.0\.1:\d+/hop4\): "
                                           r"more than 3 redirects"):
        rest(auth=exchange(erp, url="/hop1")).fetch(batch("A", ["S1"]))
    assert [len(erp.requests(f"/hop{n}")) for n in range(1, 6)] == [1, 1, 1, 1, 0] and erp.requests() == []


def test_oauth2_exchange_refuses_a_redirect_without_location(erp, rest):
    erp.respond = lambda erp, seen: (307, b"")
    with pytest.raises(AdapterError, match=r"token exchange \(POST .*/exchange\) answered HTTP 307 without a Location"):
        rest(auth=exchange(erp)).fetch(batch("A", ["S1"]))


def test_oauth2_exchange_never_follows_https_to_http(erp, rest, tmp_path):
    import ssl
    from tests.erp_server import FakeErp
    from tests.redis_server import TlsFiles
    tls = TlsFiles(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    erp.respond = exchanging  # plain http: where the redirect points
    with FakeErp(ssl_context=context) as secure:
        secure.client = erp.client
        secure.respond = lambda _, seen: (307, b"", {"Location": f"{erp.url}/exchange"})
        auth = exchange(secure)
        with pytest.raises(AdapterError, match=r"redirects to http://127\.0\.0\.1:\d+/exchange: refused, the "
                                               r"token would leave https"):
            rest(url=f"{secure.url}/atp", auth=auth, ca_bundle=str(tls.cert)).fetch(batch("A", ["S1"]))
        assert len(secure.requests("/exchange")) == 1
    assert erp.log == []


def test_oauth2_exchange_refetches_both_tokens_on_a_401(erp, rest):
    erp.stock, erp.respond = {("A", "S1"): 2}, exchanging
    adapter = rest(auth=exchange(erp))
    assert adapter.fetch(batch("A", ["S1"])) == [2]
    erp.x_tokens = set()  # the second token dies early
    assert adapter.fetch(batch("A", ["S1"])) == [2]
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer x-1", "Bearer x-1", "Bearer x-2"]
    assert [c.form()["subject_token"] for c in erp.requests("/exchange")] == ["tok-1", "tok-2"]


def test_oauth2_exchange_lifetime_decides_when_both_are_fetched_again(erp, rest):
    erp.stock, erp.respond, erp.x_lifetime = {("A", "S1"): 2}, exchanging, 1.0  # usable 0.5 s (tok-1: 3600 s)
    adapter = rest(auth=exchange(erp))
    adapter.fetch(batch("A", ["S1"]))
    time.sleep(0.7)
    adapter.fetch(batch("A", ["S1"]))
    assert [c.headers["authorization"] for c in erp.requests()] == ["Bearer x-1", "Bearer x-2"]
    assert len(erp.requests("/token")) == 2


def test_oauth2_exchange_refusal_is_an_auth_error_with_the_first_token_scrubbed(erp, rest):
    erp.respond = lambda erp, seen: (400, {"error": "invalid_grant",
                                           "error_description": f"cannot trade {seen.form()['subject_token']}"})
    with pytest.raises(AdapterError) as exc:
        rest(auth=exchange(erp)).fetch(batch("A", ["S1"]))
    assert "auth: token exchange (POST" in str(exc.value) and "answered HTTP 400" in str(exc.value)
    assert "cannot trade ***" in str(exc.value) and "tok-1" not in str(exc.value)


def test_oauth2_exchange_answer_without_the_token_names_the_path(erp, rest):
    erp.respond = lambda erp, seen: (200, {"result": {"ttl": 60}})
    with pytest.raises(AdapterError, match=r"the answer has no usable token at 'result\.token'"):
        rest(auth=exchange(erp)).fetch(batch("A", ["S1"]))


@pytest.mark.parametrize("change,key,message", [
    ({"body": {"a": "{{ tokn }}"}}, "body.a", "unknown name 'tokn' in the template (a call has: token)"),
    ({"encoding": "form", "body": {"a": {"b": "{{ token }}"}}}, "body.a",
     "With encoding: form, every value must be a string or a number (form fields are flat)."),
    ({"token_path": "result[?"}, "token_path", "not a JMESPath expression"),
    ({"encoding": "xml"}, "encoding", "Must be 'json' (a JSON body) or 'form'"),
    ({"url": "ftp://x"}, "url", "Must be an http:// or https:// URL with a host."),
    ({"body": None}, "body", "Field may not be null."),
])
def test_a_bad_exchange_is_refused_at_load_naming_the_key(config_file, change, key, message):
    exchange_block = {"url": "https://idp/exchange", "body": {"a": "{{ token }}"}, **change}
    path = config_file({"adapters": [{"name": "erp", "type": "rest", "url": "https://erp/atp", "auth": {
        "type": "oauth2_client_credentials", "token_url": "https://idp/token", "client_id": "c",
        "client_secret": "s", "exchange": exchange_block}}]})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p for p in exc.value.problems if f"adapters[0].auth.exchange.{key}: {message}" in p], exc.value.problems
