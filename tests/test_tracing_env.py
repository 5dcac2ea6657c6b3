"""Which ``OTEL_*`` settings turn tracing on (atp_bridge/tracing_env.py); no process,
no OpenTelemetry needed. The served behaviour is in tests/observability/test_tracing.py."""
import pytest

from atp_bridge import tracing_env as tracing

@pytest.mark.parametrize("env, endpoint", [
    ({}, None),
    ({"OTEL_SERVICE_NAME": "x"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/"}, "https://c:4318/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
     "http://t:1/x"),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, "http://localhost:4318/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, "http://c:4318/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
     "http://c:4318/v1/traces"),
])
def test_decide_turns_tracing_on_only_for_an_otlp_endpoint(env, endpoint):
    assert tracing.decide(env) == (endpoint, None)


@pytest.mark.parametrize("env, names", [
    ({"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER='console'"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='grpc'"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://c"}, "OTEL_EXPORTER_OTLP_ENDPOINT is not an http"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http:///v1/traces"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT has no host"),
])
def test_decide_says_which_variable_keeps_tracing_off(env, names):
    endpoint, warning = tracing.decide(env)
    assert endpoint is None and warning.startswith("tracing off: ") and names in warning


def test_a_span_shows_an_url_without_credentials_or_query():
    assert tracing.shown_url("https://u:pw@erp.example:8443/a/b?key=k#f") == "https://erp.example:8443/a/b"
    assert tracing.shown_url("http://[::1]/x?y") == "http://[::1]/x"
    assert tracing.shown_url("http://h/p") == "http://h/p"
