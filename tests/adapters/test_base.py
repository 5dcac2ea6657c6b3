"""Adapter.fetch: the one public wrapper times calls and counts failures."""
import time

import pytest
from prometheus_client import REGISTRY

from atp_bridge import metrics

from atp_bridge.adapters.base import Adapter, Batch
from atp_bridge.errors import AdapterError


class Scripted(Adapter):
    def __init__(self, name, answer=None, exc=None, sleep=0.0):
        super().__init__(name)
        self.answer, self.exc, self.sleep = answer, exc, sleep

    def lookup(self, batch):
        time.sleep(self.sleep)
        if self.exc:
            raise self.exc
        return self.answer


def value(name, **labels):
    metrics.flush()  # hot-path metrics are written in batches
    return REGISTRY.get_sample_value(name, labels) or 0.0


def batch(deadline_s=5.0):
    return Batch(["A", "B"], ["L1"], time.monotonic() + deadline_s)


def test_a_successful_fetch_is_timed_and_not_counted_as_an_error():
    a = Scripted("b-ok", answer=[1, 2])
    assert a.fetch(batch()) == [1, 2]
    assert value("atp_bridge_adapter_duration_seconds_count", adapter="b-ok") == 1
    assert value("atp_bridge_adapter_errors_total", adapter="b-ok", reason="error") == 0


@pytest.mark.parametrize("exc,reason", [(ConnectionError("no"), "error"), (TimeoutError("slow"), "timeout")])
def test_a_failing_fetch_is_converted_timed_and_counted_by_reason(exc, reason):
    name = f"b-{reason}"
    with pytest.raises(AdapterError):
        Scripted(name, exc=exc).fetch(batch())
    assert value("atp_bridge_adapter_errors_total", adapter=name, reason=reason) == 1
    assert value("atp_bridge_adapter_duration_seconds_count", adapter=name) == 1


def test_a_wrong_shaped_answer_counts_as_an_error():
    with pytest.raises(AdapterError):
        Scripted("b-short", answer=[1]).fetch(batch())
    assert value("atp_bridge_adapter_errors_total", adapter="b-short", reason="error") == 1


def test_an_answer_after_the_deadline_counts_as_a_timeout():
    assert Scripted("b-late", answer=[1, 2], sleep=0.05).fetch(batch(deadline_s=0.01)) == [1, 2]
    assert value("atp_bridge_adapter_errors_total", adapter="b-late", reason="timeout") == 1
