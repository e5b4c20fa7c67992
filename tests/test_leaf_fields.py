"""The plain-leaf shortcut (app.graphql.execution.leaf_fields) answers exactly what graphql-core's own field
execution answers: values, nulls, enums, custom scalars, and the errors (message and path) of bad values."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.graphql.execution import leaf_fields
from app.graphql.execution.leaf_fields import LeafFieldsExecutor
from app.graphql.scalars import SCALAR_MAP, DateTime


@strawberry.enum
class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


@strawberry.type
class Thing:
    name: str
    note: str | None
    level: Level
    at: DateTime  # type: ignore[valid-type]
    count: int
    broken: str  # non-null, holding None below

    @strawberry.field
    def shout(self, times: int = 1) -> str:
        return self.name.upper() * times


THINGS = [
    Thing(name="a", note=None, level=Level.LOW, at=datetime(2026, 1, 2, tzinfo=UTC), count=1, broken="x"),
    Thing(name="b", note="n", level=Level.HIGH, at="not a date", count=2, broken=None),  # type: ignore[arg-type]
]


@strawberry.type
class Query:
    @strawberry.field
    def things(self) -> list[Thing]:
        return THINGS


def schema(executor: type) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query, config=StrawberryConfig(scalar_map=SCALAR_MAP), execution_context_class=executor
    )


def outcome(result: Any) -> tuple[Any, list[tuple[str, list[Any]]]]:
    return result.data, sorted((e.message, e.path) for e in result.errors or [])


@pytest.mark.parametrize(
    "query",
    [
        "{ things { name note level count __typename } }",
        "{ things { name note level count at } }",  # every field plain: built in one loop, or not at all
        "{ things { count broken name } }",
        "{ things { n: name again: name shout twice: shout(times: 2) } }",
        "{ things { at } }",  # the second one is no datetime: an error with its path
        "{ things { broken } }",  # non-null holding None: the item is nulled, the error kept
        "query($x: Boolean!) { things { name note @include(if: $x) level @skip(if: $x) } }",
    ],
)
async def test_same_answer_as_graphql_core(query: str) -> None:
    variables = {"x": True}
    expected = await schema(StrawberryGraphQLCoreExecutionContext).execute(query, variable_values=variables)
    fast = await schema(LeafFieldsExecutor).execute(query, variable_values=variables)
    assert outcome(fast) == outcome(expected)


async def test_plain_leaves_take_the_shortcut() -> None:
    leaf_fields._plans.clear()
    await schema(LeafFieldsExecutor).execute("{ things { name level shout } }")
    plans = list(leaf_fields._plans.values())
    assert sorted(p.attribute for p in plans if p.attribute) == ["level", "name"]
    assert len(plans) == 4  # `things` (a list of objects) and `shout` (a resolver) are not plain leaves
