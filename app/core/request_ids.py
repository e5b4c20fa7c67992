"""Request ids: every request's id, made here, echoed to the client and written on every log line."""

from __future__ import annotations

import contextvars

from ulid import ULID

# The id of the request being served, for log records made anywhere below it ("-" outside requests).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_request_id() -> str:
    return f"req_{ULID()}"
