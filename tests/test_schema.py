"""`schema.graphql`, the public schema clients rely on, is the one the code serves."""

from __future__ import annotations

from pathlib import Path

from app.graphql.schema import schema_sdl

ROOT = Path(__file__).resolve().parent.parent


def test_schema_graphql_is_current() -> None:
    assert (ROOT / "schema.graphql").read_text() == schema_sdl(), (
        "schema.graphql is stale: run `make schema` and commit it"
    )
