"""Small helpers for the behaviour tests."""

from __future__ import annotations

import re
from typing import Any

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
