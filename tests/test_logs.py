"""JSON log lines: format, level from config or environment, one handler."""
import io
import logging

import orjson

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
    assert orjson.loads(stream.getvalue().splitlines()[-1])["msg"] == "hello"


def test_the_gunicorn_logconfig_formats_with_the_same_formatter():
    cfg = logs.gunicorn_logconfig()
    assert cfg["formatters"]["json"]["()"] == "atp_bridge.logs.JsonFormatter"
    assert cfg["loggers"]["gunicorn.error"]["propagate"] is True


def test_gunicorn_builds_no_access_line_of_its_own():
    from gunicorn.config import Config

    from atp_bridge import gunicorn_conf
    cfg = Config()
    for key in ("logger_class", "logconfig_dict", "accesslog"):
        cfg.set(key, getattr(gunicorn_conf, key))
    logger = cfg.logger_class(cfg)
    assert type(logger).__name__ == "GunicornLogger"
    # a plain gunicorn Logger with a logconfig_dict would build every request's atoms
    assert logger.access_log_enabled is False
    assert logger.access(None, None, {}, 0.001) is None
