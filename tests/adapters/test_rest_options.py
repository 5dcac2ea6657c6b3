"""``type: rest`` options through the real config loader: defaults, and every
bad option reported as ``file: key: message`` without echoing secrets."""
import pytest

from atp_bridge.adapters.rest_options import RequestSpec, ResponseSpec
from atp_bridge import create_app
from atp_bridge.config import load_config
from atp_bridge.errors import ConfigError

URL = "http://erp.internal:8080/atp"


def problems_of(path):
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.problems


def one(config_file, **options):
    return str(config_file({"adapters": [{"name": "erp", "type": "rest", **options}]}))


def test_a_minimal_rest_adapter_gets_the_documented_defaults(config_file):
    opts = dict(load_config(one(config_file, url=URL)).adapters[0].options)
    assert opts == {"url": URL, "method": "POST", "auth": None, "timeout_ms": 2000, "batch_size": 500,
                    "max_concurrency": 4, "retries": 1, "request": RequestSpec(), "response": ResponseSpec(),
                    "headers": {}, "tls_verify": True, "ca_bundle": None, "health_url": None,
                    "health_cache_s": 5.0, "circuit": {"failure_threshold": 5, "reset_s": 1.0}}


def test_query_style_defaults_to_get(config_file):
    opts = load_config(one(config_file, url=URL, request={"style": "query"})).adapters[0].options
    assert (opts["method"], opts["request"].products_param) == ("GET", "products")


def test_docker_style_host_names_with_underscores_are_valid_urls(config_file):
    assert load_config(one(config_file, url="http://erp_mock:8080/atp")).adapters[0].options["url"]


@pytest.mark.parametrize("options,problem", [
    ({}, "adapters[0].url: Missing data for required field."),
    ({"url": "ftp://erp/atp"}, "adapters[0].url: Must be an http:// or https:// URL with a host."),
    ({"url": "erp.internal/atp"}, "adapters[0].url: Must be an http:// or https:// URL with a host."),
    ({"method": "PUT"}, "adapters[0].method: Must be POST or GET."),
    ({"batchsize": 10}, "adapters[0].batchsize: unknown key"),
    ({"timeout_ms": 0}, "adapters[0].timeout_ms: Must be greater than or equal to 1"),
    ({"max_concurrency": 100}, "adapters[0].max_concurrency: Must be greater than or equal to 1 and less"),
    ({"request": {"style": "query"}, "method": "POST"},
     "adapters[0].request.style: style: query sends the pairs as URL parameters and needs method: GET"),
    ({"method": "GET"}, "adapters[0].method: GET carries no body: use request.style: query"),
    ({"request": {"style": "grid", "items": "lines"}}, "adapters[0].request.items: Only used with style: pairs"),
    ({"request": {"products_param": "sku"}}, "adapters[0].request.products_param: Only used with style: query"),
    ({"request": {"style": "table"}}, "adapters[0].request.style: Must be one of: pairs, grid, query."),
    ({"request": {"style": "query", "extra": {"f": [1]}}}, "adapters[0].request.extra: With style: query"),
    ({"response": {"items": "result..rows"}}, "adapters[0].response.items: Must be a dotted path"),
    ({"response": {"atp": ""}}, "adapters[0].response.atp: Must not be empty."),
    ({"auth": "token"}, "adapters[0].auth: Must be a mapping with a 'type'"),
    ({"auth": {"type": "kerberos"}}, "adapters[0].auth.type: Must be one of: bearer, basic, header, "
                                     "oauth2_client_credentials."),
    ({"auth": {"type": "bearer"}}, "adapters[0].auth.token: Missing data for required field."),
    ({"auth": {"type": "basic", "username": "u", "password": "p", "realm": "x"}},
     "adapters[0].auth.realm: unknown key"),
    ({"auth": {"type": "header", "name": "X Key", "value": "v"}},
     "adapters[0].auth.name: Must be an HTTP header name"),
    ({"auth": {"type": "oauth2_client_credentials", "token_url": "https://idp/token", "client_id": "c"}},
     "adapters[0].auth.client_secret: Missing data for required field."),
    ({"auth": {"type": "bearer", "token": "t"}, "headers": {"authorization": "Bearer x"}},
     "adapters[0].headers.authorization: Set by auth as well; keep only one."),
    ({"tls_verify": False, "ca_bundle": "ca.pem"}, "adapters[0].ca_bundle: Has no effect with tls_verify: false"),
    ({"health_url": "/health"}, "adapters[0].health_url: Must be an http:// or https:// URL"),
    ({"circuit": {"failure_threshold": 0}}, "adapters[0].circuit.failure_threshold: Must be greater"),
    ({"circuit": {"reset": 5}}, "adapters[0].circuit.reset: unknown key"),
])
def test_bad_options_are_reported_with_file_and_key(config_file, options, problem):
    path = one(config_file, **{"url": URL, **options}) if options else one(config_file)
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: {problem}"), problems[0]


def test_config_errors_never_echo_a_secret(config_file, monkeypatch):
    monkeypatch.setenv("ERP_TOKEN", "tok-secret-0006")
    path = one(config_file, url=URL, auth={"type": "bearer", "token": "${ERP_TOKEN}", "scope": 1},
               timeout_ms="${ERP_TOKEN}")
    problems = problems_of(path)
    assert sorted(p.split(": ")[1] for p in problems) == ["adapters[0].auth.scope", "adapters[0].timeout_ms"]
    assert all("tok-secret-0006" not in p for p in problems)


def test_a_missing_ca_bundle_is_a_config_problem_naming_file_and_key(config_file):
    path = one(config_file, url="https://erp.internal/atp", ca_bundle="certs/erp-ca.pem")
    with pytest.raises(ConfigError) as exc:
        load_config(path)  # what check-config and serve run before any adapter is built
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"{path}: adapters[0].ca_bundle: no such file ")
    assert exc.value.problems[0].endswith("certs/erp-ca.pem")


def test_tls_settings_reach_the_session_and_ca_bundle_resolves_next_to_the_yaml(config_file, tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "erp-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    app = create_app(str(config_file({"adapters": [
        {"name": "a", "type": "rest", "url": URL, "ca_bundle": "certs/erp-ca.pem"},
        {"name": "b", "type": "rest", "url": URL, "tls_verify": False},
        {"name": "c", "type": "rest", "url": URL}]})))
    sessions = [a.session for a in app.extensions["atp_bridge"].bridge.adapters]
    assert [s.verify for s in sessions] == [str(tmp_path / "certs" / "erp-ca.pem"), False, True]
    pools = [s.get_adapter(URL)._pool_maxsize for s in sessions]
    assert pools == [10, 10, 10]  # >= max_concurrency (4), room for several requests at once
