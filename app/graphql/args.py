"""Turning GraphQL arguments into the plain dicts the pydantic input models validate."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeGuard, TypeVar

from strawberry.types.unset import UNSET

T = TypeVar("T")


def given(value: T | None) -> TypeGuard[T]:
    """The client gave this argument (neither omitted nor null)."""
    return value is not UNSET and value is not None


def _plain(value: Any) -> Any:
    """Nested input objects (a TagInput) as dicts, for pydantic."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def as_raw(obj: Any, names: dict[str, str]) -> dict[str, Any]:
    """A strawberry input as a dict keyed by GraphQL names, leaving out what the client omitted."""
    return {gql: _plain(getattr(obj, attr)) for attr, gql in names.items() if getattr(obj, attr) is not UNSET}


def raw_args(**values: Any) -> dict[str, Any]:
    """Keyword arguments (already GraphQL-named) without the omitted ones."""
    return {name: value for name, value in values.items() if given(value)}
