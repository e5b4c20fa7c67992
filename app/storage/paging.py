"""The one keyset pager: a page of documents in a unique sort order, starting strictly after a given key.

Keyset (seek) pagination instead of skip: a page costs the same at any depth, and documents inserted
between two pages never shift it (no repeats, no gaps among those that existed). The sort key must be
unique (end it with a unique field as the tie-break), and an index should lead with the equality fields
of `match` followed by the sort fields, so the page is an index range read of `first + 1` entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from app.storage.breaker import CircuitBreaker
from app.storage.mongo import translate_errors

SortKey = Sequence[tuple[str, int]]  # (field, ASCENDING | DESCENDING), the last one unique


def _past(direction: int) -> str:
    return "$gt" if direction == ASCENDING else "$lt"


def seek(match: dict[str, Any], keys: SortKey, after: Sequence[Any]) -> dict[str, Any]:
    """`match` narrowed to the documents strictly after `after` (the sort key's values of the last
    document seen). A single-field key merges into an existing range on that field (one index range)."""
    narrowed = dict(match)
    if len(keys) == 1:
        (field, direction), (value,) = keys[0], after
        bounds = dict(narrowed.get(field) or {})
        op = _past(direction)
        current = bounds.get(op)
        tighter = value if current is None else (max if op == "$gt" else min)(current, value)
        bounds[op] = tighter
        narrowed[field] = bounds
        return narrowed
    # (a > x) or (a = x and b > y) or ..., in the sort's own directions.
    branches = []
    for i, (field, direction) in enumerate(keys):
        branch = {name: after[j] for j, (name, _) in enumerate(keys[:i])}
        branch[field] = {_past(direction): after[i]}
        branches.append(branch)
    narrowed["$or"] = branches
    return narrowed


async def keyset_page(
    collection: AsyncCollection[dict[str, Any]],
    match: dict[str, Any],
    keys: SortKey,
    after: Sequence[Any] | None,
    first: int,
    *,
    operation: str,
    breaker: CircuitBreaker | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `first` documents matching `match` in the order of `keys`, after `after` when given, and
    whether more follow (one more is read to tell)."""
    pipeline: list[dict[str, Any]] = [
        {"$match": seek(match, keys, after) if after is not None else match},
        {"$sort": dict(keys)},
        {"$limit": first + 1},
    ]
    # aggregate rather than find().sort().limit(): the same plan on MongoDB, far cheaper on nx-27017.
    async with translate_errors(operation, breaker):
        docs = await (await collection.aggregate(pipeline)).to_list()
    return docs[:first], len(docs) > first
