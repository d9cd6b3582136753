"""X-Request-ID on every response and on every log record of its request; JSON log lines."""

import asyncio
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.config import Settings
from app.errors import install_error_handlers
from app.tracing import (
    LOG_RECORD_LOOKUPS,
    NO_REQUEST,
    TEXT_FORMAT,
    JsonFormatter,
    RequestIdFilter,
    RequestIdMiddleware,
    TextFormatter,
    current_request_id,
    log_config,
    skip_unused_record_fields,
)

pytestmark = pytest.mark.anyio
logger = logging.getLogger("tests.tracing")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/work/{tag}")
    async def work(tag: str) -> dict[str, str]:
        logger.info("start %s", tag)
        await asyncio.sleep(0.01)
        logger.info("end %s", tag)
        return {"seen": current_request_id()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    app.add_middleware(RequestIdMiddleware)
    return app


def _client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_client_id_is_echoed_and_stamped_on_its_log_records(records) -> None:
    async with _client() as client:
        response = await client.get("/work/a", headers={"X-Request-ID": "trace-123"})
    assert response.headers["X-Request-ID"] == "trace-123"
    assert response.json() == {"seen": "trace-123"}
    assert [r.request_id for r in records.records] == ["trace-123", "trace-123"]


async def test_an_id_is_made_when_missing_or_unsafe(records) -> None:
    async with _client() as client:
        made = await client.get("/work/a")
        unsafe = await client.get("/work/b", headers={"X-Request-ID": "x" * 129})
        spaced = await client.get("/work/c", headers={"X-Request-ID": "two words"})
    ids = [r.headers["X-Request-ID"] for r in (made, unsafe, spaced)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == 3
    assert [r.request_id for r in records.records] == [i for i in ids for _ in range(2)]


async def test_concurrent_requests_keep_their_own_ids(records) -> None:
    async with _client() as client:
        responses = await asyncio.gather(
            *(client.get(f"/work/{i}", headers={"X-Request-ID": f"id-{i}"}) for i in range(5))
        )
    assert [r.json()["seen"] for r in responses] == [f"id-{i}" for i in range(5)]
    for record in records.records:
        assert record.request_id == f"id-{record.args[0]}"


async def test_unexpected_errors_are_logged_and_answered_with_the_id(records) -> None:
    error_logger = logging.getLogger("app.errors")
    error_logger.addHandler(records)
    try:
        async with _client() as client:
            response = await client.get("/boom", headers={"X-Request-ID": "trace-500"})
    finally:
        error_logger.removeHandler(records)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert response.headers["X-Request-ID"] == "trace-500"
    assert [r.request_id for r in records.records] == ["trace-500"]


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
    records, monkeypatch: pytest.MonkeyPatch
) -> None:
    for flag in ("_srcfile", *LOG_RECORD_LOOKUPS):
        if hasattr(logging, flag):
            monkeypatch.setattr(logging, flag, getattr(logging, flag))  # restored afterwards
    skip_unused_record_fields()
    logger.addHandler(records)
    try:
        logger.warning("lean %s", "record")
    finally:
        logger.removeHandler(records)
    (record,) = records.records
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
