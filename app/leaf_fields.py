"""Plain leaf fields without the per-field machinery.

A list page of 20 events completes 200 fields; profiled (py-spy, orgErrors), graphql-core and
Strawberry spend about 3 µs on each: a resolve-info object, Strawberry's resolver wrapper, the
awaitable checks, then the scalar's coercion. For a *plain leaf* (a Strawberry field with no resolver,
no field extension and no arguments, typed as a scalar or an enum) all that computes
`coerce_output_value(getattr(source, python_name))`, which this executor does directly.

Anything else, and any plain leaf whose value is missing or fails to coerce, goes through
graphql-core's own `execute_field`, so errors (paths, nulls of non-null fields) stay exactly theirs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from graphql import GraphQLField, GraphQLObjectType, Undefined, get_named_type, is_leaf_type, is_non_null_type
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

_BACKREF = "strawberry-definition"  # where Strawberry keeps a GraphQL field's StrawberryField


class _Leaf(NamedTuple):
    field: GraphQLField  # held so that its id, the cache key, is not reused
    attribute: str | None  # None: not a plain leaf
    coerce: Any
    nullable: bool


_MISSING = object()


_plans: dict[int, _Leaf] = {}


def _plan(field: GraphQLField) -> _Leaf:
    plan = _plans.get(id(field))
    if plan is not None and plan.field is field:
        return plan
    definition = (field.extensions or {}).get(_BACKREF)
    named = get_named_type(field.type)
    plain = (
        isinstance(definition, StrawberryField)
        and definition.is_basic_field
        and not field.args
        and is_leaf_type(named)
    )
    plan = _Leaf(
        field,
        definition.python_name if plain else None,
        named.coerce_output_value if plain else None,
        not is_non_null_type(field.type),
    )
    _plans[id(field)] = plan
    return plan


class LeafFieldsExecutor(StrawberryGraphQLCoreExecutionContext):
    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        field = self.schema.get_field(parent_type, node.name.value)
        middleware = self.middleware_manager  # resolver middleware must see every field: none here
        if field is not None and not node.arguments and (middleware is None or not middleware.middlewares):
            plan = _plan(field)
            if plan.attribute is not None:
                value = getattr(source, plan.attribute, _MISSING)
                if value is None and plan.nullable:
                    return None
                if value is not None and value is not _MISSING:
                    try:
                        coerced = plan.coerce(value)
                    except Exception:
                        coerced = None
                    if coerced is not None and coerced is not Undefined:
                        return coerced
        return super().execute_field(parent_type, source, field_details_list, path, position_context)
