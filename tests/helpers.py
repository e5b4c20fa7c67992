"""Small helpers for the behaviour tests."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from app.events.model import ErrorEventRecord, Severity
from app.events.store import new_event_id
from app.storage.mongo import Database
from tests.conftest import GraphQLClient
from tests.documents import LOG_ERROR, PAGE_IDS

ISO_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def log_error(gql: GraphQLClient, org_id: str, key: str, **error: Any) -> dict[str, Any]:
    error.setdefault("message", "Something broke")
    error.setdefault("severity", "HIGH")
    data = await gql.data(LOG_ERROR, {"orgId": org_id, "error": error}, key=key)
    return data["logError"]["error"]


async def all_pages(gql: GraphQLClient, org_id: str, key: str, first: int, **variables: Any) -> list[str]:
    """Every event id, following cursors until the last page."""
    ids: list[str] = []
    after = None
    while True:
        data = await gql.data(
            PAGE_IDS, {"orgId": org_id, "first": first, "after": after, **variables}, key=key
        )
        page = data["orgErrors"]
        ids += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            return ids
        after = page["pageInfo"]["endCursor"]


# --- storage tests: a real database, the commands the driver sends to it ------------------------


class CommandLog(monitoring.CommandListener):
    """The commands a client sends (only those named in `names`, when given), in order: each one's name
    and body, the driver operation that sent it, and `sent`, set when one goes out (a test can wait
    until a command is on the wire)."""

    def __init__(self, names: Collection[str] | None = None) -> None:
        self.names = names
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.operations: list[int | None] = []
        self.sent = asyncio.Event()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.names is None or event.command_name in self.names:
            self.seen.append((event.command_name, dict(event.command)))
            self.operations.append(event.operation_id)
            self.sent.set()

    def clear(self) -> None:
        self.seen.clear()
        self.operations.clear()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


@contextlib.asynccontextmanager
async def monitored_database(mongo_uri: str, log: CommandLog, prefix: str) -> AsyncIterator[Database]:
    """A database of its own on the test server, through a client whose commands `log` records."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, event_listeners=[log])
    try:
        yield client[f"{prefix}_{uuid.uuid4().hex[:12]}"]
    finally:
        await client.close()


def record(
    org_id: str,
    fingerprint: str,
    *,
    message: str | None = None,
    seq: int | None = None,
    received: datetime | None = None,
) -> ErrorEventRecord:
    """An event as the events service hands it to the stores, received now unless `received` says."""
    now = received if received is not None else datetime.now(UTC)
    return ErrorEventRecord(
        id=new_event_id(now),
        org_id=org_id,
        message=message if message is not None else f"boom {fingerprint}",
        severity=Severity.HIGH,
        timestamp=now,
        received_at=now,
        code=None,
        source=None,
        context=None,
        fingerprint=fingerprint,
        seq=seq,
    )
