"""Request ids and the access line, for every route."""
import logging
import os

import pytest

from atp_bridge import create_app
from atp_bridge.access import request_id_from
from tests.conftest import SPEC_SAMPLE

KEY = "ns-webhook-key-0123456789abcdef"


@pytest.fixture
def client(config_file):
    return create_app(str(config_file({
        "auth": {"api_keys": [KEY]},
        "adapters": [{"name": "stock", "type": "static", "values": {"US01": {"1000061": 1}}}]}))).test_client()


def access_lines(caplog):
    return [r.msg for r in caplog.records if r.name == "atp_bridge.access"]


@pytest.mark.parametrize("route", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/nope"])
def test_every_route_echoes_a_valid_caller_request_id(client, route):
    resp = client.get(route, headers={"X-Request-ID": "abc-123 from:newstore"})
    assert resp.headers["X-Request-ID"] == "abc-123 from:newstore"


@pytest.mark.parametrize("given", [None, "", "x" * 129, "tab\there", "new\nline", "caf\u00e9"])
def test_an_unusable_request_id_is_replaced_by_a_generated_one(client, given):
    headers = {"X-Request-ID": given} if given is not None else {}
    try:
        resp = client.get("/healthz", headers=headers)
    except ValueError:  # werkzeug refuses newlines in headers on the client side already
        return
    rid = resp.headers["X-Request-ID"]
    assert rid != given and len(rid) == 32 and int(rid, 16) >= 0


def test_request_id_from_accepts_printable_ascii_up_to_128_characters():
    assert request_id_from("a" * 128) == "a" * 128
    assert request_id_from("a" * 129) != "a" * 129


def test_one_access_line_per_webhook_call_with_its_facts(client, caplog):
    with caplog.at_level(logging.INFO, logger="atp_bridge"):
        resp = client.post("/availabilities", json=SPEC_SAMPLE,
                           headers={"Authorization": KEY, "X-Request-ID": "req-1"})
    (line,) = access_lines(caplog)
    assert resp.status_code == 200
    assert line["request_id"] == "req-1" and line["method"] == "POST" and line["path"] == "/availabilities"
    assert line["status"] == 200 and line["pairs"] == 6 and line["adapters"] == ("stock",)
    assert line["degraded"] is None and line["duration_ms"] >= 0


def test_the_access_line_carries_the_degraded_reason(config_file, caplog):
    c = create_app(str(config_file({"adapters": [{"name": "erp", "type": "failing"}]}))).test_client()
    with caplog.at_level(logging.INFO, logger="atp_bridge"):
        c.post("/availabilities", json=SPEC_SAMPLE)
    (line,) = access_lines(caplog)
    assert line["degraded"] == "error:erp" and line["status"] == 200


def test_refused_webhook_calls_are_logged_too_and_probes_only_at_debug(client, caplog):
    with caplog.at_level(logging.INFO, logger="atp_bridge"):
        client.post("/availabilities", json=SPEC_SAMPLE)  # no key
        client.get("/healthz")
    (line,) = access_lines(caplog)
    assert line["status"] == 401 and line["pairs"] == 0
    with caplog.at_level(logging.DEBUG, logger="atp_bridge"):
        client.get("/readyz")
    assert access_lines(caplog)[-1]["path"] == "/readyz"


def test_the_authorization_header_never_reaches_the_log(client, caplog):
    with caplog.at_level(logging.DEBUG, logger="atp_bridge"):
        client.post("/availabilities", json=SPEC_SAMPLE, headers={"Authorization": KEY})
        client.post("/availabilities", json=SPEC_SAMPLE, headers={"Authorization": "Bearer " + "y" * 30})
        client.get("/healthz", headers={"Authorization": KEY})
    text = caplog.text + repr([r.msg for r in caplog.records])
    assert KEY not in text and "y" * 30 not in text


def test_generated_request_ids_are_unique_and_a_forked_worker_draws_a_new_prefix():
    ids = [request_id_from(None) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:16] for i in ids}) == 1  # one prefix per process, then a counter
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a gunicorn worker is a fork of the master
        os.write(write, request_id_from(None).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 32 and child[:16] != ids[0][:16]


def test_the_access_line_shows_a_non_ascii_path_as_the_caller_sent_it(client, caplog):
    with caplog.at_level(logging.DEBUG, logger="atp_bridge"):
        assert client.get("/caf\u00e9/stores").status_code == 404
    (line,) = access_lines(caplog)
    assert line["path"] == "/caf\u00e9/stores" and line["status"] == 404
