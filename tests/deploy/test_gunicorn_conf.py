"""deploy/gunicorn.conf.py: the settings come from the environment, and it
carries the Prometheus multiprocess child_exit hook."""
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

CONF = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"


def load_conf():
    sys.modules.pop("atp_bridge.gunicorn_conf", None)  # re-read the environment
    spec = importlib.util.spec_from_file_location("deploy_gunicorn_conf", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def conf(monkeypatch):
    monkeypatch.setenv("ATP_BRIDGE_BIND", "0.0.0.0:9090")
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.setenv("ATP_BRIDGE_WORKER_CONNECTIONS", "300")
    monkeypatch.setenv("ATP_BRIDGE_GRACEFUL_TIMEOUT", "12")
    monkeypatch.setenv("ATP_BRIDGE_TIMEOUT", "40")
    yield load_conf()
    sys.modules.pop("atp_bridge.gunicorn_conf", None)


def test_the_numbers_come_from_the_environment(conf):
    assert (conf.bind, conf.workers, conf.worker_connections, conf.graceful_timeout, conf.timeout) == \
        ("0.0.0.0:9090", 5, 300, 12, 40)
    assert conf.control_socket_disable is True  # no shared ~/.gunicorn/gunicorn.ctl
    assert conf.worker_class == "atp_bridge.worker.Worker" and conf.preload_app is False and conf.accesslog is None


def test_the_defaults_without_environment(monkeypatch):
    for var in ("ATP_BRIDGE_BIND", "WEB_CONCURRENCY", "ATP_BRIDGE_WORKER_CONNECTIONS",
                "ATP_BRIDGE_GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    conf = load_conf()
    assert (conf.bind, conf.workers, conf.worker_connections, conf.graceful_timeout) == \
        ("127.0.0.1:8080", 2, 1000, 25)


def test_child_exit_marks_the_worker_dead_for_prometheus(conf, monkeypatch, tmp_path):
    from prometheus_client import multiprocess
    (tmp_path / "gauge_livemax_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    marked = []
    monkeypatch.setattr(multiprocess, "mark_process_dead", lambda pid: marked.append(pid))
    conf.child_exit(SimpleNamespace(), SimpleNamespace(pid=4242))
    assert marked == [4242]
    monkeypatch.undo()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf.child_exit(SimpleNamespace(), SimpleNamespace(pid=4242))  # the real one
    assert [p.name for p in tmp_path.iterdir()] == ["counter_4242.db"]  # counters stay in totals


def test_gunicorn_accepts_every_setting_of_the_module(conf):
    from gunicorn.config import Config
    cfg = Config()
    for key, value in vars(conf).items():
        if key in cfg.settings:
            cfg.set(key, value)
    assert cfg.child_exit is conf.child_exit or cfg.settings["child_exit"].get() is conf.child_exit
    assert cfg.logconfig_dict["formatters"]["json"]["()"] == "atp_bridge.logs.JsonFormatter"


def test_post_worker_init_freezes_start_up_objects_and_raises_the_gc_threshold(conf):
    import gc
    before = gc.get_threshold()
    try:
        conf.post_worker_init(None)
        assert gc.get_threshold() == (7000, 10, 10)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
