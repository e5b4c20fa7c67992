"""What every connection type shares: PageInfo."""

from __future__ import annotations

import strawberry


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool = strawberry.field(
        description="True when the page was requested with `after` (pagination is forward-only)."
    )
    start_cursor: str | None
    end_cursor: str | None


def page_info(cursors: list[str], has_next_page: bool, has_previous_page: bool) -> PageInfo:
    return PageInfo(
        has_next_page=has_next_page,
        has_previous_page=has_previous_page,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )
