"""Log records stamped with their request's id, in text or JSON lines."""

import json
import logging

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.tracing import (
    LOG_RECORD_LOOKUPS,
    NO_REQUEST,
    TEXT_FORMAT,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    log_config,
    skip_unused_record_fields,
)


def _access_record() -> logging.LogRecord:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/v2/models/cnn/infer", "1.1", 200), None,
    )  # fmt: skip
    RequestIdFilter().filter(record)
    return record


def test_json_lines_split_out_access_fields() -> None:
    line = json.loads(JsonFormatter().format(_access_record()))
    assert line["request_id"] == NO_REQUEST and line["logger"] == "uvicorn.access"
    assert line["method"] == "POST" and line["path"] == "/v2/models/cnn/infer"
    assert line["status"] == 200 and line["client"] == "127.0.0.1:5000"
    assert line["message"] == '127.0.0.1:5000 - "POST /v2/models/cnn/infer HTTP/1.1" 200'


def test_log_config_stamps_both_formats() -> None:
    for log_format in ("text", "json"):
        config = log_config("info", log_format)
        assert config["handlers"]["access"]["formatter"] == log_format
        assert all(h["filters"] == ["id"] for h in config["handlers"].values())
    text = logging.Formatter(log_config("info", "text")["formatters"]["text"]["format"])
    assert "[-]: 127.0.0.1:5000" in text.format(_access_record())


def test_the_text_time_stamp_is_the_standard_one_across_seconds() -> None:
    standard, cached = logging.Formatter(TEXT_FORMAT), TextFormatter(TEXT_FORMAT)
    record = _access_record()
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_699_999_999.25):
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert cached.format(record) == standard.format(record)
    dated = TextFormatter("%(asctime)s", datefmt="%H:%M")
    assert dated.format(record) == logging.Formatter("%(asctime)s", datefmt="%H:%M").format(record)


def test_records_skip_only_what_neither_format_prints(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for flag in ("_srcfile", *LOG_RECORD_LOOKUPS):
        if hasattr(logging, flag):
            monkeypatch.setattr(logging, flag, getattr(logging, flag))  # restored afterwards
    skip_unused_record_fields()
    with caplog.at_level(logging.WARNING, logger="tests.tracing"):
        logging.getLogger("tests.tracing").warning("lean %s", "record")
    (record,) = caplog.records
    RequestIdFilter().filter(record)
    assert (record.lineno, record.thread, record.process) == (0, None, None)  # not looked up
    assert getattr(record, "taskName", None) is None
    skipped = ("pathname", "filename", "lineno", "funcName", "module", "thread", "process")
    skipped += ("taskName", "processName", "threadName")
    assert not any(f"%({field})" in TEXT_FORMAT for field in skipped)
    text = logging.Formatter(TEXT_FORMAT).format(record)
    assert text.endswith("WARNING tests.tracing [-]: lean record")
    assert json.loads(JsonFormatter().format(record))["message"] == "lean record"


def test_log_format_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHGATE_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("TORCHGATE_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings()
