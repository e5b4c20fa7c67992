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
from strawberry.types.field import StrawberryField

from app.graphql.execution.replay import ReplayExecutor

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
        definition.python_name if plain and isinstance(definition, StrawberryField) else None,
        getattr(named, "coerce_output_value", None) if plain else None,  # scalars' and enums' coercion
        not is_non_null_type(field.type),
    )
    _plans[id(field)] = plan
    return plan


class LeafFieldsExecutor(ReplayExecutor):  # (a mutation's root fields: tape and replay, see replay.py)
    _objects: dict[int, tuple[Any, list[tuple[str, _Leaf]] | None]] | None = None

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Any,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        """An object whose selected fields are all plain leaves (an event of a list page) is built in
        one loop; if any of its values is missing or fails to coerce, the whole object goes through
        graphql-core instead, which reports it."""
        plans = self._object_plan(parent_type, grouped_field_set) if position_context is None else None
        if plans is not None:
            result: dict[str, Any] = {}
            for name, plan in plans:
                value = _value(plan, source_value)
                if value is _MISSING:
                    break
                result[name] = value
            else:
                return result
        return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)

    def _object_plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: Any
    ) -> list[tuple[str, _Leaf]] | None:
        # Per executor (one request) and per collected selection, which graphql-core memoizes: the
        # same object for every item of a list. The entry holds it, so its id is not reused.
        if self._objects is None:
            self._objects = {}
        entry = self._objects.get(id(grouped_field_set))
        if entry is not None and entry[0] is grouped_field_set:
            return entry[1]
        plans: list[tuple[str, _Leaf]] | None = [] if self._no_middleware() else None
        for name, details in grouped_field_set.items() if plans is not None else ():
            node = details[0].node
            field = self.schema.get_field(parent_type, node.name.value)
            plan = _plan(field) if field is not None and not node.arguments else None
            if plan is None or plan.attribute is None or plans is None:
                plans = None  # one field that is not a plain leaf: the object goes the usual way
                break
            plans.append((name, plan))
        self._objects[id(grouped_field_set)] = (grouped_field_set, plans)
        return plans

    def _no_middleware(self) -> bool:
        middleware = self.middleware_manager  # resolver middleware must see every field
        return middleware is None or not middleware.middlewares

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
        if field is not None and not node.arguments and self._no_middleware():
            plan = _plan(field)
            if plan.attribute is not None:
                value = _value(plan, source)
                if value is not _MISSING:
                    return value
        return super().execute_field(parent_type, source, field_details_list, path, position_context)


def _value(plan: _Leaf, source: Any) -> Any:
    """The field's coerced value, or _MISSING when graphql-core must handle it (and report why)."""
    value = getattr(source, plan.attribute, _MISSING)  # type: ignore[arg-type]
    if value is None:
        return None if plan.nullable else _MISSING
    if value is _MISSING:
        return _MISSING
    try:
        coerced = plan.coerce(value)
    except Exception:  # graphql-core coerces it again and reports the error, with the field's path
        return _MISSING
    return _MISSING if coerced is None or coerced is Undefined else coerced
