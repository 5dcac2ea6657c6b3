"""NewStore tokens by client credentials, against the emulator as a real
process with a token endpoint of NewStore's shape."""
import logging
import threading

import pytest
import requests
from click.testing import CliRunner

from atp_bridge.fulfillment import errors as e
from atp_bridge.fulfillment.cli import fulfillment
from atp_bridge.fulfillment.client import FulfillmentClient
from atp_bridge.fulfillment.tokens import (
    ClientCredentials, StaticToken, TokenError, token_source, token_url_for,
)

CLIENT_ID, SECRET = "warehouse-client", "s3cret-Value-9f8e7d6c5b4a"


class FakeClock:
    """The client's monotonic clock, moved by the test (the emulator keeps real time)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def emulator(start_emulator):
    """Tokens live 1 s on this emulator: long enough for a call, short enough to expire."""
    return start_emulator("--seed", "5", "--client-id", CLIENT_ID, "--client-secret", SECRET,
                          "--token-lifetime", "1")


def issued(emulator) -> int:
    return emulator.get("/_emulator/auth")["tokens_issued"]


def credentials(emulator, **kwargs) -> ClientCredentials:
    return ClientCredentials(emulator.token_url(), CLIENT_ID, SECRET, **kwargs)


def test_a_token_is_fetched_by_a_client_credentials_form_post_and_sent_as_bearer(emulator):
    before = issued(emulator)
    source = credentials(emulator)
    uuid = emulator.create([("p1", 5.0)])["uuid"]
    with FulfillmentClient(emulator.url, source) as client:
        assert client.accept(uuid).status == 200
        assert client.resend(uuid).status == 200
    assert (source.fetches, issued(emulator) - before) == (1, 1)  # fetched once, then reused
    assert emulator.get(f"/_emulator/fulfillment_requests/{uuid}")["acknowledged_at"]


def test_many_threads_needing_a_token_at_once_cause_one_fetch(emulator):
    before = issued(emulator)
    source = credentials(emulator)
    uuid = emulator.create([("p1", 5.0)])["uuid"]
    start, statuses = threading.Barrier(8), []

    def work():
        with FulfillmentClient(emulator.url, source) as client:
            start.wait()
            statuses.append(client.accept(uuid).status)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    assert (source.fetches, issued(emulator) - before) == (1, 1)


def test_the_token_is_renewed_before_it_expires(emulator):
    clock = FakeClock()
    source = credentials(emulator, clock=clock, leeway_s=60)
    first = source.token()
    clock.now += 0.4  # lifetime 1 s, leeway capped at half of it: still valid
    assert source.token() == first
    clock.now += 0.2  # past 0.5 s: renewed although not yet expired
    second = source.token()
    assert second != first and source.fetches == 2


def test_a_401_for_an_expired_token_fetches_a_new_one_once_and_the_call_succeeds(emulator):
    clock = FakeClock()  # frozen: the client believes its token is fresh
    source = credentials(emulator, clock=clock, leeway_s=0)
    uuid = emulator.create([("p1", 5.0)])["uuid"]
    with FulfillmentClient(emulator.url, source) as client:
        client.accept(uuid)
        stale = source.token()
        _wait_until_expired(emulator, stale)
        assert client.resend(uuid).status == 200  # 401, one new token, sent again
    assert source.fetches == 2 and source.token() != stale


def _wait_until_expired(emulator, token):
    probe = f"{emulator.url}/v0/d/fulfillment_requests/none/shipment"
    for _ in range(100):
        answer = requests.get(probe, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        if answer.status_code == 401:
            assert answer.json()["error_description"] == "The access token has expired."
            return
        threading.Event().wait(0.05)
    pytest.fail("the emulator's token did not expire")


def test_a_second_401_with_a_fresh_token_is_the_callers_unauthorized_error(serve):
    from flask import Flask, request

    app = Flask("always-401")
    app.calls = []

    @app.post("/auth/realms/t/protocol/openid-connect/token")
    def token():
        return {"access_token": f"tok-{len(app.calls)}", "expires_in": 300}

    @app.post("/v0/d/fulfillment_requests/<uuid>/acknowledgement")
    def accept(uuid):
        app.calls.append(request.headers["Authorization"])
        return {"error_code": "unauthorized", "error_description": "no"}, 401

    url = serve(app)
    source = ClientCredentials(f"{url}/auth/realms/t/protocol/openid-connect/token", "c", "s")
    with pytest.raises(e.UnauthorizedError):
        FulfillmentClient(url, source).accept("fr-1")
    assert app.calls == ["Bearer tok-0", "Bearer tok-1"]  # renewed once, not in a loop


def test_a_raw_token_still_works_and_a_401_is_not_retried(serve):
    from atp_bridge.fulfillment.emulator import create_emulator_app

    url = serve(create_emulator_app(token="raw-token"))
    with FulfillmentClient(url, "raw-token") as client:
        with pytest.raises(e.FulfillmentRequestInvalidError):
            client.accept("unknown")  # authorized: the id is what is wrong
    with pytest.raises(e.UnauthorizedError):
        FulfillmentClient(url, "other").accept("unknown")


def test_secrets_and_tokens_never_reach_logs_errors_or_the_cli(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    source = credentials(emulator)
    token = source.token()
    wrong = ClientCredentials(emulator.token_url(), CLIENT_ID, SECRET + "-wrong")
    with pytest.raises(TokenError) as refused:
        wrong.token()
    assert refused.value.status == 401 and "invalid_client" in str(refused.value)
    cli = CliRunner().invoke(fulfillment, ["accept", "x", "--url", emulator.url,
                                           "--client-id", CLIENT_ID,
                                           "--client-secret", SECRET + "-wrong",
                                           "--token-url", emulator.token_url()])
    assert cli.exit_code == 1 and "was refused: HTTP 401 invalid_client" in cli.stderr
    assert "Fix: check NEWSTORE_CLIENT_ID / NEWSTORE_CLIENT_SECRET" in cli.stderr
    assert "fetched a NewStore access token" in caplog.text  # the log line exists...
    for text in (caplog.text, str(refused.value), repr(source), repr(wrong), cli.output):
        assert SECRET not in text and token not in text  # ...without any secret


def test_the_cli_fetches_a_token_from_client_id_secret_and_token_url(emulator):
    uuid = emulator.create([("p1", 5.0)])["uuid"]
    env = {"NEWSTORE_URL": emulator.url, "NEWSTORE_CLIENT_ID": CLIENT_ID,
           "NEWSTORE_CLIENT_SECRET": SECRET, "NEWSTORE_TOKEN_URL": emulator.token_url(),
           "NEWSTORE_TOKEN": "ignored-when-client-credentials-are-set"}
    result = CliRunner().invoke(fulfillment, ["accept", uuid], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Accepted fulfillment request {uuid} (HTTP 200).\n"


def test_from_env_builds_client_credentials_for_the_tenant():
    client = FulfillmentClient.from_env({"NEWSTORE_URL": "https://acme.p.newstore.net",
                                         "NEWSTORE_CLIENT_ID": "c",
                                         "NEWSTORE_CLIENT_SECRET": "s",
                                         "NEWSTORE_TENANT": "acme-sandbox"})
    assert isinstance(client.auth, ClientCredentials)
    assert client.auth.token_url == (
        "https://id.p.newstore.net/auth/realms/acme-sandbox/protocol/openid-connect/token")
    raw = FulfillmentClient.from_env({"NEWSTORE_URL": "http://h", "NEWSTORE_TOKEN": "t"})
    assert isinstance(raw.auth, StaticToken) and raw.token == "t"


@pytest.mark.parametrize("settings, problem", [
    ({"client_id": "c"}, "a client id needs its client secret"),
    ({"client_secret": "s"}, "a client secret needs its client id"),
    ({"client_id": "c", "client_secret": "s"}, "client credentials need the tenant"),
    ({}, "no credentials"),
])
def test_incomplete_credentials_name_what_is_missing_without_the_secret(settings, problem):
    with pytest.raises(ValueError) as info:
        token_source(**settings)
    assert str(info.value).startswith(problem)


def test_token_url_for_a_tenant_is_newstores_identity_service():
    assert token_url_for("acme") == (
        "https://id.p.newstore.net/auth/realms/acme/protocol/openid-connect/token")


def test_the_emulator_token_endpoint_refuses_other_grants_and_wrong_secrets(emulator):
    url = emulator.token_url()
    password = requests.post(url, data={"grant_type": "password", "username": "u",
                                        "password": "p"}, timeout=5)
    assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")
    wrong = requests.post(url, data={"grant_type": "client_credentials",
                                     "client_id": CLIENT_ID, "client_secret": "nope"}, timeout=5)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    ok = requests.post(url, data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                  "client_secret": SECRET}, timeout=5).json()
    assert (ok["token_type"], ok["expires_in"]) == ("Bearer", 1.0) and ok["access_token"]
    unknown = requests.get(f"{emulator.url}/v0/d/fulfillment_requests/x/shipment",
                           headers={"Authorization": "Bearer made-up"}, timeout=5)
    assert (unknown.status_code, unknown.json()["error_description"]) == (
        401, "The bearer token is not valid.")
