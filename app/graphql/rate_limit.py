"""The `rateLimit` query field: the caller's budget as this request left it (GitHub-style)."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from app.graphql.context import RequestContext
from app.graphql.scalars import DateTime
from app.ratelimit.service import Resource as ResourceEnum

Info = strawberry.Info[RequestContext, None]
RateLimitResource = strawberry.enum(ResourceEnum, name="RateLimitResource")


@strawberry.type(description="The request budget this request was charged to.")
class RateLimit:
    resource: ResourceEnum
    limit: int = strawberry.field(description="Units per window.")
    remaining: int = strawberry.field(description="Units left in the window after this request.")
    reset_at: DateTime = strawberry.field(description="When the window ends and the budget refills.")
    cost: int = strawberry.field(description="Units this request spent.")


@strawberry.type
class RateLimitQueries:
    @strawberry.field(
        description="Your request budget: limit, remaining, reset time and this request's cost."
    )
    def rate_limit(self, info: Info) -> RateLimit | None:
        info.context.require_principal()
        budget = info.context.rate_limit
        if budget is None:  # not charged (WebSocket operations are not budgeted)
            return None
        return RateLimit(
            resource=budget.resource,
            limit=budget.limit,
            remaining=budget.remaining,
            reset_at=DateTime(datetime.fromtimestamp(budget.reset_at, UTC)),
            cost=budget.cost,
        )
