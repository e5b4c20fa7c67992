"""The reference point of the benchmark: a bare Strawberry query returning 20 in-memory objects of
7 fields, no caches, no extensions, served the same way (uvicorn, asyncio loop, httptools)."""

from __future__ import annotations

import sys

import strawberry
import uvicorn
from strawberry.asgi import GraphQL


@strawberry.type
class Item:
    id: str
    name: str
    severity: str
    count: int
    score: float
    active: bool
    note: str | None


ITEMS = [
    Item(
        id=f"item-{i}",
        name=f"Item {i}",
        severity="HIGH",
        count=i,
        score=i / 3,
        active=i % 2 == 0,
        note=None if i % 3 else "note",
    )
    for i in range(20)
]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS


app = GraphQL(strawberry.Schema(query=Query))

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
