"""Item 10: the API key is compared exactly.

The rule: ``Authorization: <key>`` or ``Authorization: Bearer <key>``, the
scheme in any case and followed by exactly one space; nothing inside the value
is stripped. HTTP drops the blanks around a field value before any
application sees it (RFC 9110, 5.5), so ``<key>`` with a trailing space is the
key. Keys themselves may not start or end with whitespace (check-config).
"""
import orjson
import pytest

from tests.conftest import write_yaml
from tests.hostile.conftest import BODY, KEY, exchange, split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bridge(stock_bridge):
    return stock_bridge


def status_with(bridge, value: bytes) -> int:
    head = (b"POST /availabilities HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n"
            b"Authorization:" + value + b"\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    answer, _ = exchange(bridge.port, head + BODY)
    status, _, body = split(answer)
    if status == 200:
        assert orjson.loads(body)["availabilities"][0]["atp"] == 4
    return status


K = KEY.encode()


@pytest.mark.parametrize("value", [b" " + K, b" Bearer " + K, b" bearer " + K, b" BEARER " + K,
                                   b" " + K + b"  ", b"\t" + K])
def test_the_key_alone_or_after_one_bearer_space_is_accepted(bridge, value):
    assert status_with(bridge, value) == 200


@pytest.mark.parametrize("value", [b" Bearer  " + K, b" Bearer\t" + K, b" Bearer" + K,
                                   b" Basic " + K, b" " + K + b"x", b" " + K[:-1], b" x" + K,
                                   b" Bearer " + K + b" extra", b" " + K.upper(), b"", b" Bearer "])
def test_anything_else_is_refused_with_401(bridge, value):
    assert status_with(bridge, value) == 401


@pytest.mark.parametrize("key", [KEY + "\n", " " + KEY, KEY + "\t"])
def test_a_configured_key_with_blanks_at_either_end_is_a_config_problem(tmp_path, key):
    from atp_bridge.config import load_config
    from atp_bridge.errors import ConfigError

    path = write_yaml(tmp_path / "bridge.yaml", {"auth": {"api_keys": [KEY, key]},
                                                 "adapters": [{"name": "stock", "type": "csv", "path": "s.csv"}]})
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.problems == [f"{path}: auth.api_keys.1: an API key may not start or end with "
                                "whitespace (is there a stray space or newline from the secret store?)"]
