"""The GraphQL schema, composed from the domains."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from app.graphql.alerts import AlertMutations, AlertQueries
from app.graphql.errors import ErrorFormatter, log_unexpected
from app.graphql.events import EventMutations, EventQueries, EventSubscriptions
from app.graphql.execution.document_cache import DocumentCache
from app.graphql.execution.fanout import SharedResultsExecutor
from app.graphql.groups import GroupMutations, GroupQueries, GroupSubscriptions
from app.graphql.limits import Limits, limit_rule
from app.graphql.projects import ProjectQueries
from app.graphql.rate_limit import RateLimitQueries
from app.graphql.scalars import SCALAR_MAP
from app.graphql.stats import StatsQueries
from app.graphql.status import StatusMutations, StatusQueries, StatusSubscriptions
from app.graphql.statuspage import StatusPageMutations, StatusPageQueries, StatusPageSubscriptions
from app.graphql.tracing import operation_tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

Query = merge_types(
    "Query",
    (
        EventQueries,
        GroupQueries,
        AlertQueries,
        StatsQueries,
        StatusQueries,
        RateLimitQueries,
        ProjectQueries,
        StatusPageQueries,
    ),
)
Mutation = merge_types(
    "Mutation", (EventMutations, GroupMutations, AlertMutations, StatusMutations, StatusPageMutations)
)
Subscription = merge_types(
    "Subscription", (EventSubscriptions, GroupSubscriptions, StatusSubscriptions, StatusPageSubscriptions)
)


class AppSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Logs unexpected errors with their stack trace and request id; the client sees a masked one."""
        context: Any = execution_context.context if execution_context else None
        log_unexpected(errors, getattr(context, "request_id", "-"))


def build_schema(
    limits: Limits = Limits(),  # noqa: B008
    *,
    introspection: bool = True,
    tracer: Tracer | None = None,
    executor: type[StrawberryGraphQLCoreExecutionContext] = SharedResultsExecutor,
) -> AppSchema:
    """`tracer`: a span per operation (app.graphql.tracing); None, the default, adds nothing.
    `executor`: graphql-core's execution context; the default has every fast path (compiled plans,
    plain leaves, shared subscription results). The tests compare it with Strawberry's own."""
    rules = (limit_rule(limits),) + (() if introspection else (NoSchemaIntrospectionCustomRule,))
    return AppSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        # Repeated documents complete from compiled plans; a subscription event executes once per document.
        execution_context_class=executor,
        extensions=[
            # First, so it is left last: its span holds the formatted errors' codes.
            *([operation_tracing(tracer)] if tracer is not None else []),
            ErrorFormatter,
            # Parsing and validation dominate an untuned Strawberry request; clients repeat documents.
            lambda: DocumentCache(limits.max_tokens, rules, limits.max_repeats),
        ],
    )


def schema_sdl() -> str:
    return build_schema().as_str() + "\n"
