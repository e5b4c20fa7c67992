"""The GraphQL schema, composed from the domains."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from app.error_mapping import ErrorFormatter, log_unexpected
from app.events.types import EventMutations, EventQueries, EventSubscriptions
from app.fanout import SharedResultsExecutor
from app.groups.types import GroupQueries
from app.parse_cache import DocumentCache
from app.query_limits import Limits, limit_rule
from app.rate_limit_types import RateLimitQueries
from app.scalars import SCALAR_MAP
from app.stats.types import StatsQueries
from app.status.types import StatusMutations, StatusQueries, StatusSubscriptions

Query = merge_types("Query", (EventQueries, GroupQueries, StatsQueries, StatusQueries, RateLimitQueries))
Mutation = merge_types("Mutation", (EventMutations, StatusMutations))
Subscription = merge_types("Subscription", (EventSubscriptions, StatusSubscriptions))


class AppSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Logs unexpected errors with their stack trace and request id; the client sees a masked one."""
        context: Any = execution_context.context if execution_context else None
        log_unexpected(errors, getattr(context, "request_id", "-"))


def build_schema(limits: Limits = Limits(), *, introspection: bool = True) -> AppSchema:  # noqa: B008
    rules = (limit_rule(limits),) + (() if introspection else (NoSchemaIntrospectionCustomRule,))
    return AppSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=SharedResultsExecutor,  # a subscription event executes once per document
        extensions=[
            ErrorFormatter,
            # Parsing and validation dominate an untuned Strawberry request; clients repeat documents.
            lambda: DocumentCache(limits.max_tokens, rules),
        ],
    )


def schema_sdl() -> str:
    return build_schema().as_str() + "\n"
