"""Request tracing: a request id on every log line of its request, and the logging set-up.

The id lives in a context variable. Under uvicorn and grpc.aio each request runs in its own
task, whose context copy dies with it, so an adapter sets the variable and never has to reset
it; that keeps the id visible to the framework's outermost error handler, which runs after the
HTTP middleware (app/api/middleware.py) has returned. Records logged in worker threads
(forward, decode) carry no id: one batch serves many requests.
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

HEADER = "X-Request-ID"
GRPC_METADATA_KEY = HEADER.lower()  # gRPC metadata keys are lower case
GRPC_ACCESS_LOGGER = "app.grpc.access"  # one line per gRPC call, like uvicorn.access for HTTP
NO_REQUEST = "-"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
LogFormat = Literal["text", "json"]

_ID_PATTERN = r"[\x21-\x7e]{1,128}"  # visible ASCII: safe in headers, metadata and log lines
_VALID_TEXT_ID = re.compile(_ID_PATTERN)
_request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)


def current_request_id() -> str:
    """The id of the request being served, or ``-`` outside any request."""
    return _request_id.get()


def adopt_request_id(incoming: str | None) -> str:
    """Make the client's id (if valid) or a fresh one the current request's (each request
    runs in a task of its own, whose context copy dies with it: nothing to reset)."""
    valid = incoming is not None and _VALID_TEXT_ID.fullmatch(incoming) is not None
    request_id = incoming if valid and incoming is not None else os.urandom(16).hex()
    _request_id.set(request_id)
    return request_id


class RequestIdFilter(logging.Filter):
    """Stamps ``request_id`` on each record a handler emits (``-`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` with its default time stamp made once a second, not per record
    (``time.strftime`` was about a sixth of an access line's cost)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; uvicorn's access records get their fields split out."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", _request_id.get()),
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, http_version, status = args
            entry.update(
                client=client, method=method, path=path, http_version=http_version, status=status
            )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


LOG_RECORD_LOOKUPS = ("logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")


def skip_unused_record_fields() -> None:
    """Stop ``logging`` from looking up, for every record, what neither format prints: the
    caller's file and line (a walk up the stack), the thread, the process and (Python 3.12+)
    the asyncio task. The logging HOWTO's own optimization; one access line per request made it
    about 4% of the cnn's requests per second."""
    logging._srcfile = None  # type: ignore[attr-defined]
    for flag in LOG_RECORD_LOOKUPS:
        if hasattr(logging, flag):  # logAsyncioTasks: Python 3.12+
            setattr(logging, flag, False)


def log_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the app and uvicorn (which applies it in each worker
    process): app records to stderr, access records to stdout, all stamped with the request id."""
    handler = {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["id"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"id": {"()": RequestIdFilter}},
        "formatters": {
            "text": {"class": f"{__name__}.TextFormatter", "format": TEXT_FORMAT},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "default": {**handler, "stream": "ext://sys.stderr"},
            "access": {**handler, "stream": "ext://sys.stdout"},
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": ["access"], "propagate": False},
            GRPC_ACCESS_LOGGER: {"handlers": ["access"], "propagate": False},
        },
    }
