"""Logging: JSON lines in production, readable lines in development, request id on every line."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from app.core.request_ids import request_id_var

# Attributes every LogRecord has; anything else was passed through `extra=` and is printed.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class _JsonLines(OrjsonFormatter):
    """One JSON object per line, `time` in ISO 8601 UTC (2026-11-26T03:50:00.123Z) for log pipelines;
    orjson, as the request line is written on every request (stdlib json measured 1.4x slower)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _json_time(record.created)


# Control characters (and Unicode line breaks) in a readable line would let a client forge lines: a `%0A`
# in a URL path or an organization id is decoded before it is logged. They are written as \xNN / \uNNNN.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]} | {
    c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029)
}


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


class _ReadableFormatter(logging.Formatter):
    """`time level logger message key=value ...` with the extras a JSON line would carry; one line per
    record (control characters escaped), then the stack trace, if any, as it is."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extras = " ".join(
            f"{k}={escape(str(v))}"
            for k, v in vars(record).items()
            if k not in _STANDARD and v not in (None, "-")
        )
        if extras:
            line = f"{line} {extras}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        tail = "\n".join(
            t for t in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)) if t
        )
        return f"{line}\n{tail}" if tail else line


def _json_time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


_second: list[Any] = [None, ""]  # the last whole second written by write_line, and its text


def _now_text() -> str:
    """Now, as `_json_time` writes it (2026-11-26T03:50:00.123Z), the seconds' text made once a second."""
    ns = time.time_ns()
    second = ns // 1_000_000_000
    if _second[0] != second:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{ns // 1_000_000 % 1000:03d}Z"


class _JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The production handler. `write_line` writes an INFO line with the same fields, in the same order
    and encoding, as `_JsonLines` formats for a record, without making the record: the request log line
    is written on every request, and a LogRecord (the caller's frame lookup, some twenty attributes, the
    filter and handler chain, the formatter's field merging) costs several times the line itself. The
    request middleware (app.web.middleware) uses it only when this handler is the only one its record
    would reach; otherwise (tests capturing records, an operator's extra handler) it logs a record."""

    def write_line(self, logger: str, message: str, extras: dict[str, Any]) -> bool:
        """False (nothing written) when a record must be logged instead: a level or filter of its own."""
        if self.level > logging.INFO or len(self.filters) != 1:
            return False  # (the one filter is _RequestIdFilter; the caller always gives request_id)
        line = {"time": _now_text(), "level": "INFO", "logger": logger, "message": message}
        line.update(extras)
        data = orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS).decode() + self.terminator
        with self.lock:  # type: ignore[union-attr]  # (StreamHandler.createLock made it)
            try:
                self.stream.write(data)
                self.flush()
            except Exception:
                return False
        return True


def configure(level: str, json_lines: bool) -> None:
    handler = _JsonLinesHandler(sys.stderr) if json_lines else logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if json_lines:
        handler.setFormatter(
            _JsonLines(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(_ReadableFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log would duplicate our one line per request.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("pymongo").setLevel(max(logging.WARNING, root.level))
