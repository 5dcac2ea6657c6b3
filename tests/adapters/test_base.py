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


# -- check() problems and warnings() ---------------------------------------

class Drop(Adapter):
    """A third-party shape: a certificate it needs at start, a data file it polls."""

    file_options = ("ca",)
    data_file_options = ("drop",)

    def lookup(self, batch):
        return []


def drop_spec(tmp_path, **options):
    from atp_bridge.config_types import AdapterSpec

    return AdapterSpec(name="drops", type="drop", options=options, source=str(tmp_path / "a.yaml"),
                       base_dir=str(tmp_path))


def test_a_missing_data_file_is_a_warning_with_its_key_and_not_a_problem(tmp_path):
    spec = drop_spec(tmp_path, drop="in/stock.csv")
    assert Drop.check(spec) == []
    assert Drop.warnings(spec) == [
        ("drop", f"no such file {tmp_path / 'in' / 'stock.csv'} (yet): adapter 'drops' has no data "
                 f"until it appears")]


def test_a_missing_start_file_stays_a_problem_and_no_warning(tmp_path):
    spec = drop_spec(tmp_path, ca="ca.pem")
    assert Drop.check(spec) == [("ca", f"no such file {tmp_path / 'ca.pem'}")]
    assert Drop.warnings(spec) == []


def test_a_data_file_that_exists_or_is_not_set_gives_no_warning(tmp_path):
    (tmp_path / "stock.csv").write_text("product,location,atp\n")
    assert Drop.warnings(drop_spec(tmp_path, drop="stock.csv")) == []
    assert Drop.warnings(drop_spec(tmp_path)) == []


def test_a_directory_where_the_data_file_should_be_is_a_warning(tmp_path):
    (tmp_path / "stock.csv").mkdir()
    assert Drop.warnings(drop_spec(tmp_path, drop="./stock.csv")) == [
        ("drop", f"{tmp_path / 'stock.csv'} is not a file: adapter 'drops' has no data until a file "
                 f"replaces it")]


def test_an_adapter_without_data_files_has_no_warnings(tmp_path):
    assert Scripted.warnings(drop_spec(tmp_path, drop="missing.csv")) == []


def test_config_warnings_carry_each_adapters_file_and_key(config_file, tmp_path):
    from atp_bridge.adapters.base import ConfigWarning, config_warnings
    from atp_bridge.config import load_config

    (tmp_path / "here.csv").write_text("product,location,atp\nA,L,1\n")
    path = config_file({"adapters": [{"name": "a", "type": "csv", "path": "here.csv"},
                                     {"name": "b", "type": "csv", "path": "later.csv"}]})
    found = config_warnings(load_config(path))
    assert found == [ConfigWarning(str(path), "adapters[1].path",
                                   f"no such file {tmp_path / 'later.csv'} (yet): adapter 'b' has no data "
                                   f"until it appears")]
    assert str(found[0]) == f"{path}: adapters[1].path: {found[0].message}"
