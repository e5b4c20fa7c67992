"""Request ids: every request's id, made here, echoed to the client and written on every log line."""

from __future__ import annotations

import contextvars
import os
import time

from ulid import base32

# The id of the request being served, for log records made anywhere below it ("-" outside requests).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_request_id() -> str:
    """`req_` and a ULID: 48 bits of milliseconds and 80 random bits, in the library's base32. Encoded
    directly rather than through `ULID()`, whose monotonic generator (a lock, a policy, an object, then
    the encoding) costs twice as much on every request; a request id needs uniqueness, not ordering
    within a millisecond."""
    millis = time.time_ns() // 1_000_000
    return "req_" + base32.encode(millis.to_bytes(6, "big") + os.urandom(10))
