"""The process's one MongoDB client and the translation of driver failures into catalogued errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteError,
)

from app.core.errors import InternalError, ServiceUnavailable
from app.storage.breaker import CircuitBreaker

log = logging.getLogger("app.storage")

Document = dict[str, Any]
Client = AsyncMongoClient[Document]
Database = AsyncDatabase[Document]


def create_client(uri: str, timeout_ms: int, max_pool_size: int = 100) -> Client:
    # tz_aware: dates come back as aware UTC datetimes (stored as BSON dates in UTC).
    # timeoutMS bounds every operation, so a slow or absent database fails fast, never hangs.
    # The pool is as large as the admission limit (app.storage.admission): calls wait there, not here.
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        appname="error-tracker",
        serverSelectionTimeoutMS=timeout_ms,
        timeoutMS=timeout_ms,
        maxPoolSize=max_pool_size,
    )


@asynccontextmanager
async def translate_errors(operation: str, breaker: CircuitBreaker | None = None) -> AsyncIterator[None]:
    """Driver failures become SERVICE_UNAVAILABLE (unreachable, timed out) or INTERNAL_ERROR; the
    breaker, when given, is consulted before the call and told how it went. The breaker's admission
    control, when it has one, first waits for a slot (a busy server refuses without blaming the database)."""
    admission = breaker.admission if breaker is not None else None
    if admission is None:
        async with _translated(operation, breaker):
            yield
        return
    await admission.acquire()
    try:
        async with _translated(operation, breaker):
            yield
    finally:
        admission.release()


@asynccontextmanager
async def _translated(operation: str, breaker: CircuitBreaker | None) -> AsyncIterator[None]:
    if breaker is not None:
        breaker.before_call()
    try:
        yield
    except (ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout) as exc:
        _unavailable(operation, exc, breaker)
    except PyMongoError as exc:
        if exc.timeout:
            _unavailable(operation, exc, breaker)
        if breaker is not None:
            breaker.succeeded()  # the database answered, with an error of its own
        raise InternalError() from exc
    except Exception:
        if breaker is not None:
            breaker.succeeded()  # e.g. a DuplicateKeyError handled by the store: the database answered
        raise
    except BaseException:  # cancelled: no verdict on the database
        if breaker is not None:
            breaker.released()
        raise
    else:
        if breaker is not None:
            breaker.succeeded()


def write_failure(failure: dict[str, Any]) -> InternalError:
    """INTERNAL_ERROR for one document of a bulk write that failed (`writeErrors` entry); the driver's
    error is its cause, logged with the request id."""
    error = InternalError()
    error.__cause__ = WriteError(str(failure.get("errmsg", "")), failure.get("code"), failure)
    return error


def _unavailable(operation: str, exc: PyMongoError, breaker: CircuitBreaker | None) -> NoReturn:
    log.warning("database unavailable during %s: %s", operation, exc)
    if breaker is not None:
        breaker.failed()
    raise ServiceUnavailable(retry_after=max(1, round(breaker.cooldown)) if breaker else 5) from exc


async def ping(db: Database) -> None:
    async with translate_errors("ping"):
        await db.command("ping")


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A stored date. MongoDB returns BSON dates as datetimes; nx-27017 turns a date written by
    `$set` onto an existing document into text ("2026-11-23 20:14:43.267000", UTC), so read both."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
