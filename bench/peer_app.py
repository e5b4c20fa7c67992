"""The fair peer of the benchmark: the same orgErrors / errorEvent / serviceStatus / logError API, written
the way Strawberry's and PyMongo's documentation lead a developer to write it, on the same database.

- Strawberry types with the enum, DateTime and JSON fields (Strawberry's own `datetime` and `JSON`
  scalars), async resolvers reading with `AsyncMongoClient`: `find().sort().limit()` for a page,
  `find_one` for one event, `insert_one` for a new one; `serviceStatus` answered from memory.
- No caches, no extensions, no custom executor; Strawberry's ASGI app mounted on a Starlette route, as
  its Starlette integration page shows.
- `POST /raw`: a raw Starlette JSON route (reads and parses the body, answers a fixed serviceStatus-shaped
  JSON document of about the same size): the floor of any request on this stack.

Served like the project (uvicorn, asyncio loop, httptools, no access log).
Usage: peer_app.py PORT  (MONGODB_URI and MONGODB_DB from the environment).
"""

from __future__ import annotations

import enum
import json
import os
import sys
from datetime import UTC, datetime

import strawberry
import uvicorn
from pymongo import AsyncMongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.scalars import JSON

client: AsyncMongoClient = AsyncMongoClient(os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017"))
events = client[os.environ.get("MONGODB_DB", "bench")]["error_events"]


@strawberry.enum
class Severity(enum.Enum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


@strawberry.enum
class ServiceState(enum.Enum):
    OPERATIONAL = "OPERATIONAL"
    DEGRADED_PERFORMANCE = "DEGRADED_PERFORMANCE"
    PARTIAL_OUTAGE = "PARTIAL_OUTAGE"
    MAJOR_OUTAGE = "MAJOR_OUTAGE"
    UNDER_MAINTENANCE = "UNDER_MAINTENANCE"


@strawberry.type
class ErrorEvent:
    id: strawberry.ID
    org_id: strawberry.ID
    message: str
    severity: Severity
    timestamp: datetime
    received_at: datetime
    code: str | None
    source: str | None
    context: JSON | None
    fingerprint: str

    @classmethod
    def from_doc(cls, doc: dict) -> ErrorEvent:
        return cls(
            id=doc["event_id"],
            org_id=doc["org_id"],
            message=doc["message"],
            severity=Severity(doc["severity"]),
            timestamp=doc["timestamp"],
            received_at=doc["received_at"],
            code=doc.get("code"),
            source=doc.get("source"),
            context=json.loads(doc["context"]) if doc.get("context") else None,
            fingerprint=doc["fingerprint"],
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ErrorEventConnection:
    nodes: list[ErrorEvent]
    page_info: PageInfo


@strawberry.input
class ErrorFilter:
    min_severity: Severity | None = None
    source: str | None = None


@strawberry.type
class ServiceComponent:
    name: str
    status: ServiceState
    updated_at: datetime


@strawberry.type
class ServiceStatus:
    status: ServiceState
    services: list[ServiceComponent]


@strawberry.type
class LogErrorPayload:
    error_id: strawberry.ID
    replayed: bool


STARTED = datetime.now(UTC)
COMPONENTS = [
    ServiceComponent(name=n, status=ServiceState.OPERATIONAL, updated_at=STARTED)
    for n in ("api", "storage", "authentication")
]
RANKS = {s: i for i, s in enumerate(Severity)}


@strawberry.type
class Query:
    @strawberry.field
    async def org_errors(
        self, org_id: strawberry.ID, first: int = 20, filter: ErrorFilter | None = None
    ) -> ErrorEventConnection:
        query: dict = {"org_id": org_id}
        if filter is not None and filter.min_severity is not None:
            query["severity"] = {"$in": [s.value for s in Severity if RANKS[s] >= RANKS[filter.min_severity]]}
        if filter is not None and filter.source is not None:
            query["source"] = filter.source
        docs = await events.find(query).sort("event_id", -1).limit(first + 1).to_list()
        nodes = [ErrorEvent.from_doc(d) for d in docs[:first]]
        return ErrorEventConnection(
            nodes=nodes,
            page_info=PageInfo(has_next_page=len(docs) > first, end_cursor=nodes[-1].id if nodes else None),
        )

    @strawberry.field
    async def error_event(self, org_id: strawberry.ID, id: strawberry.ID) -> ErrorEvent | None:
        doc = await events.find_one({"org_id": org_id, "event_id": id})
        return ErrorEvent.from_doc(doc) if doc else None

    @strawberry.field
    def service_status(self) -> ServiceStatus:
        return ServiceStatus(status=ServiceState.OPERATIONAL, services=COMPONENTS)


@strawberry.input
class LogErrorInput:
    message: str
    severity: Severity


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def log_error(
        self, org_id: strawberry.ID, error: LogErrorInput, idempotency_key: str | None = None
    ) -> LogErrorPayload:
        now = datetime.now(UTC)
        event_id = f"peer-{now.timestamp():.6f}-{os.urandom(4).hex()}"
        await events.insert_one(
            {
                "event_id": event_id,
                "org_id": org_id,
                "message": error.message,
                "severity": error.severity.value,
                "timestamp": now,
                "received_at": now,
                "fingerprint": error.message,
            }
        )
        return LogErrorPayload(error_id=event_id, replayed=False)


RAW_BODY = {
    "data": {
        "serviceStatus": {
            "status": "OPERATIONAL",
            "services": [
                {"name": n, "status": "OPERATIONAL", "updatedAt": "2026-01-01T00:00:00.000Z"}
                for n in ("api", "storage", "authentication")
            ],
        }
    }
}


async def raw(request: Request) -> JSONResponse:
    await request.json()
    return JSONResponse(RAW_BODY)


app = Starlette(
    routes=[
        Route("/graphql", GraphQL(strawberry.Schema(query=Query, mutation=Mutation))),
        Route("/raw", raw, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="asyncio",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
