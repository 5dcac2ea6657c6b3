"""JSON log lines: format, level from config or environment, one handler."""
import io
import logging
import os
import time

import orjson
import pytest

from atp_bridge import logs


def formatted(record_msg, *args, level=logging.INFO, exc_info=None):
    record = logging.LogRecord("atp_bridge.x", level, __file__, 1, record_msg, args, exc_info)
    return orjson.loads(logs.JsonFormatter().format(record))


def test_a_plain_message_becomes_one_json_object_with_timestamp_level_and_logger():
    line = formatted("loaded %d adapters", 3)
    assert line["msg"] == "loaded 3 adapters" and line["level"] == "INFO" and line["logger"] == "atp_bridge.x"
    assert line["ts"].endswith("Z") and "T" in line["ts"]


def test_a_dict_message_is_emitted_as_its_own_fields():
    line = formatted({"msg": "access", "status": 200, "adapters": ["a"], "odd": object()})
    assert line["status"] == 200 and line["adapters"] == ["a"] and line["level"] == "INFO"
    assert line["odd"].startswith("<object")  # unknown types are stringified, never raise


def test_exceptions_are_kept_in_the_same_line():
    try:
        1 / 0
    except ZeroDivisionError:
        import sys
        line = formatted("boom", level=logging.ERROR, exc_info=sys.exc_info())
    assert "ZeroDivisionError" in line["exc"]


def test_the_environment_level_wins_over_the_config(monkeypatch):
    monkeypatch.setenv("ATP_BRIDGE_LOG_LEVEL", "debug")
    assert logs.resolve_level("WARNING") == "DEBUG"
    monkeypatch.setenv("ATP_BRIDGE_LOG_LEVEL", "loud")  # invalid: the config decides
    assert logs.resolve_level("WARNING") == "WARNING"
    monkeypatch.delenv("ATP_BRIDGE_LOG_LEVEL")
    assert logs.resolve_level("ERROR") == "ERROR"


def test_setup_adds_one_json_handler_when_nobody_configured_logging(monkeypatch):
    root, ours = logging.getLogger(), logging.getLogger("atp_bridge")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(ours, "handlers", [])
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    logs.setup_logging("INFO")
    logs.setup_logging("INFO")
    assert len(ours.handlers) == 1
    ours.info("hello")
    ours.handlers[0].flush()
    assert orjson.loads(stream.getvalue().splitlines()[-1])["msg"] == "hello"
    ours.handlers[0].close()


def buffered(flush_ms: float = 60_000):
    stream = io.StringIO()
    handler = logs.BufferedStreamHandler(stream, flush_ms=flush_ms)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.Logger("atp_bridge.test")  # not registered: no other handlers, no parents
    logger.addHandler(handler)
    return logger, handler, stream


def msgs(stream) -> list:
    return [orjson.loads(line)["msg"] for line in stream.getvalue().splitlines()]


def test_buffered_lines_wait_for_a_flush_and_a_warning_writes_them_in_order():
    logger, handler, stream = buffered()
    logger.info("one")
    logger.info("two")
    assert stream.getvalue() == ""  # held: no write per line
    logger.warning("three")
    assert msgs(stream) == ["one", "two", "three"]
    logger.info("four")
    handler.close()  # logging.shutdown() at exit closes every handler
    assert msgs(stream) == ["one", "two", "three", "four"]


def test_the_flusher_thread_writes_held_lines_after_the_interval():
    logger, handler, stream = buffered(flush_ms=20)
    logger.info("later")
    deadline = time.monotonic() + 10
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert msgs(stream) == ["later"]
    handler.close()


def test_flush_ms_0_writes_every_line_at_once_and_64_kib_force_a_write():
    logger, handler, stream = buffered(flush_ms=0)
    logger.info("now")
    assert msgs(stream) == ["now"]
    logger, handler, stream = buffered()
    logger.info("x" * (handler.max_bytes + 1))
    assert len(msgs(stream)) == 1


def test_a_fork_writes_the_parents_held_lines_once_and_before_the_childs():
    read, write = os.pipe()
    with os.fdopen(write, "w") as out:
        handler = logs.BufferedStreamHandler(out, flush_ms=60_000)
        handler.setFormatter(logs.JsonFormatter())
        logger = logging.Logger("atp_bridge.test")
        logger.addHandler(handler)
        logger.info("parent")
        pid = os.fork()
        if pid == 0:
            logger.info("child")
            handler.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        handler.close()
    with os.fdopen(read) as f:  # the fork wrote the parent's held line first, once
        assert [orjson.loads(line)["msg"] for line in f.read().splitlines()] == ["parent", "child"]


def test_the_flush_interval_comes_from_the_environment_and_junk_is_refused(monkeypatch):
    monkeypatch.delenv("ATP_BRIDGE_LOG_FLUSH_MS", raising=False)
    assert logs.flush_interval_ms() == 1000
    monkeypatch.setenv("ATP_BRIDGE_LOG_FLUSH_MS", "250")
    assert logs.flush_interval_ms() == 250
    assert logs.BufferedStreamHandler(io.StringIO()).interval == 0.25
    for junk in ("soon", "-1", "nan"):
        monkeypatch.setenv("ATP_BRIDGE_LOG_FLUSH_MS", junk)
        with pytest.raises(ValueError, match=f"ATP_BRIDGE_LOG_FLUSH_MS='{junk}': expected milliseconds"):
            logs.flush_interval_ms()


def test_the_gunicorn_logconfig_formats_with_the_same_formatter():
    cfg = logs.gunicorn_logconfig()
    assert cfg["formatters"]["json"]["()"] == "atp_bridge.logs.JsonFormatter"
    assert cfg["handlers"]["stderr"]["class"] == "atp_bridge.logs.BufferedStreamHandler"
    assert cfg["loggers"]["gunicorn.error"]["propagate"] is True


def test_gunicorn_builds_no_access_line_of_its_own(monkeypatch):
    from gunicorn.config import Config

    from atp_bridge import gunicorn_conf
    root = logging.getLogger()
    installed = []  # gunicorn's dictConfig fills this list; the root logger keeps its own
    monkeypatch.setattr(root, "handlers", installed)
    monkeypatch.setattr(root, "level", root.level)
    cfg = Config()
    for key in ("logger_class", "logconfig_dict", "accesslog"):
        cfg.set(key, getattr(gunicorn_conf, key))
    logger = cfg.logger_class(cfg)
    assert type(logger).__name__ == "GunicornLogger"
    # a plain gunicorn Logger with a logconfig_dict would build every request's atoms
    assert logger.access_log_enabled is False
    assert logger.access(None, None, {}, 0.001) is None
    assert [type(h).__name__ for h in installed] == ["BufferedStreamHandler"]
    for handler in installed:
        handler.close()


@pytest.mark.parametrize("switches", [True, False])
def test_make_record_gives_the_record_logger_log_would_make(monkeypatch, switches):
    monkeypatch.setattr(logging, "_srcfile", None)  # as setup_logging sets it
    for flag in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, switches)
    made = logs.make_record("atp_bridge.access", logging.WARNING, {"msg": "access"})
    logger = logging.Logger("atp_bridge.access")
    seen = []
    logger.handle = seen.append  # what log() hands over
    logger.warning({"msg": "access"})
    (logged,) = seen
    clocks = {"created", "msecs", "relativeCreated"}
    assert {k: v for k, v in vars(made).items() if k not in clocks} == \
           {k: v for k, v in vars(logged).items() if k not in clocks}
    assert set(vars(made)) == set(vars(logged)) and 0 <= logged.created - made.created < 60
    assert (made.thread is None) is (not switches) and made.levelname == "WARNING"


def test_a_fork_waits_for_a_write_in_progress():
    import threading
    handler = logs.BufferedStreamHandler(io.StringIO(), flush_ms=60_000)
    writing, done = threading.Event(), threading.Event()

    def slow_write():  # the flusher thread in the middle of a write
        with handler.lock:
            writing.set()
            time.sleep(0.3)
            done.set()

    writer = threading.Thread(target=slow_write)
    writer.start()
    writing.wait(10)
    pid = os.fork()
    if pid == 0:
        handler.flush()  # the child's lock is free: no deadlock
        os._exit(0)
    assert done.is_set()  # the fork happened only after the write finished
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    writer.join()
    handler.close()
