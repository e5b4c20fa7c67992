"""The process's one MongoDB client and the translation of driver failures into catalogued errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from app.errors import InternalError, ServiceUnavailable

log = logging.getLogger("app.storage")


def create_client(uri: str, timeout_ms: int) -> AsyncMongoClient:
    # tz_aware: dates come back as aware UTC datetimes (stored as BSON dates in UTC).
    # timeoutMS bounds every operation, so a slow or absent database fails fast, never hangs.
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        appname="error-tracker",
        serverSelectionTimeoutMS=timeout_ms,
        timeoutMS=timeout_ms,
    )


@asynccontextmanager
async def translate_errors(operation: str) -> AsyncIterator[None]:
    """Driver failures become SERVICE_UNAVAILABLE (unreachable, timed out) or INTERNAL_ERROR."""
    try:
        yield
    except (ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout) as exc:
        log.warning("database unavailable during %s: %s", operation, exc)
        raise ServiceUnavailable() from exc
    except PyMongoError as exc:
        if exc.timeout:
            log.warning("database timed out during %s: %s", operation, exc)
            raise ServiceUnavailable() from exc
        raise InternalError() from exc


async def ping(db: AsyncDatabase) -> None:
    async with translate_errors("ping"):
        await db.command("ping")


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A stored date. MongoDB returns BSON dates as datetimes; nx-27017 turns a date written by
    `$set` onto an existing document into text ("2026-11-23 20:14:43.267000", UTC), so read both."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
