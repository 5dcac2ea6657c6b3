"""Item 8: only the documented paths answer stock.

``/availabilities`` and ``{base_path}/availabilities`` are the webhook. A
path Werkzeug would have matched after collapsing slashes (``//availabilities``,
``/%2Favailabilities``, which arrives decoded as ``//availabilities``) is a 404
envelope, counted as ``route="(unmatched)"``: never stock under a route label
no dashboard shows.
"""
import re
import time

import orjson
import pytest

from tests.hostile.conftest import BODY, exchange, post_head, split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bridge(stock_bridge):
    return stock_bridge


def ask(bridge, path: str) -> tuple[int, dict]:
    answer, _ = exchange(bridge.port, post_head(path, b"Connection: close\r\n") + BODY)
    status, _, body = split(answer)
    return status, orjson.loads(body)


def count(bridge, route: str, status: str) -> float:
    text = bridge.get("/metrics").text
    m = re.search(rf'^atp_bridge_requests_total\{{route="{re.escape(route)}",status="{status}"\}} (\S+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("path", ["/availabilities", "/newstore_api/v0/availabilities"])
def test_the_documented_paths_answer_stock(bridge, path):
    status, body = ask(bridge, path)
    assert (status, body["availabilities"][0]["atp"]) == (200, 4)


@pytest.mark.parametrize("path", ["//availabilities", "/%2Favailabilities", "///availabilities",
                                  "//newstore_api/v0/availabilities", "/availabilities/"])
def test_any_other_spelling_is_a_404_envelope(bridge, path):
    status, body = ask(bridge, path)
    assert (status, body["error"]) == (404, "not_found")
    assert "availabilities" not in body


def test_a_refused_spelling_is_counted_as_unmatched(bridge):
    before = count(bridge, "(unmatched)", "404")
    for _ in range(3):
        assert ask(bridge, "//availabilities")[0] == 404
    end = time.monotonic() + 10  # counts are written in batches, at least every second
    while count(bridge, "(unmatched)", "404") < before + 3 and time.monotonic() < end:
        time.sleep(0.2)
    assert count(bridge, "(unmatched)", "404") == before + 3
