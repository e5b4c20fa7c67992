"""Compiled completion of documents seen before: a plan per selection, run without graphql-core's
per-field machinery.

graphql-core completes a resolved value field by field: a resolve-info object, Strawberry's resolver
wrapper, awaitable checks, path bookkeeping and a coercion for every field of every object of a page.
For the selections this schema answers from plain attributes, all that computes the same thing as a
few nested loops of `getattr` and the leaf types' `coerce_output_value`. So, for each root field's
value, graphql-core calls `complete_value` and this executor answers it from a *plan*: a tree of
small functions compiled once from the selection (graphql-core's own field collection does the
merging, aliases, fragments and `@include`/`@skip`; the plan is keyed by the selection's AST nodes
and the values of the variables those directives read).

What stays graphql-core's: choosing the operation, coercing variables and arguments, calling the root
resolvers (Strawberry converts their arguments; errors they raise are reported by graphql-core), the
response and its errors. What a plan does not cover is left to graphql-core entirely:

- statically: a field with a resolver of its own or with arguments, an abstract (interface or union)
  type, an object type with an `is_type_of` check, fragment arguments, resolver middleware (Strawberry
  extensions that wrap resolvers), subscriptions (app.graphql.execution.fanout shares those);
- at run time: any value a plan cannot complete exactly as graphql-core would (a null in a non-null
  position, a missing attribute, a leaf that does not coerce, a list that is not a list, an exception
  object). The plan raises, and graphql-core completes the same value again from the start and reports
  the error with its own message and path. Plans only read and coerce, so running one and throwing its
  work away changes nothing.

Counters (class attributes, per process): `compiled` values completed by a plan, `fallbacks` values a
plan handed back at run time, `uncovered` root values with no plan.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, cast

from graphql import (
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    OperationType,
    Undefined,
    is_leaf_type,
    visit,
)
from graphql.execution.collect_fields import FieldDetailsList, collect_subfields
from graphql.language import DirectiveNode, VariableNode, Visitor

from app.graphql.execution.document_cache import Entry, add_plan, entry_of
from app.graphql.execution.leaf_fields import LeafFieldsExecutor

Completer = Callable[[Any], Any]


class _Fallback(Exception):
    """A plan met a value it cannot complete exactly as graphql-core would."""


class _DirectiveVariables(Visitor):
    """Names of the variables that @include/@skip read, anywhere in the document."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
        if node.name.value in ("include", "skip"):
            for argument in node.arguments or ():
                if isinstance(argument.value, VariableNode):
                    self.names.add(argument.value.name.value)


# Plans and the directive variable names of each operation are kept in the document cache's entry of
# their document (app.graphql.execution.document_cache): a plan holds the document's nodes (and through
# them its text and every token), so it goes when the document goes, and the cache's token budget bounds
# them too. A document the cache does not keep (too long, too many tokens, parsed elsewhere) gets its
# plans compiled for its request and not kept.


class CompiledExecutor(LeafFieldsExecutor):
    compiled = 0
    fallbacks = 0
    uncovered = 0

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        # Root fields only (below them a plan either covers the whole value or graphql-core does), and
        # once per field: graphql-core calls this again with the inner type of a non-null one.
        if (
            path.prev is None
            and return_type is info.return_type
            and position_context is None
            and self._plannable()
        ):
            plan = self._plan(return_type, field_details_list)
            if plan is None:
                CompiledExecutor.uncovered += 1
            else:
                try:
                    completed = plan(result)
                except Exception:  # _Fallback, or anything a getattr or coercion raised
                    CompiledExecutor.fallbacks += 1
                else:
                    CompiledExecutor.compiled += 1
                    return completed
        return super().complete_value(return_type, field_details_list, info, path, result, position_context)

    def _plannable(self) -> bool:
        return self.operation.operation is not OperationType.SUBSCRIPTION and self._no_middleware()

    def _plan(self, return_type: GraphQLOutputType, details: FieldDetailsList) -> Completer | None:
        nodes = tuple(d.node for d in details)
        kept = entry_of(self.operation)
        key = (id(return_type), *map(id, nodes), *self._directive_values(kept))
        found = kept.plans.get(key) if kept is not None else None
        if found is not None and found[0] is return_type and all(map(operator.is_, found[1], nodes)):
            return cast(Completer | None, found[2])
        if any(d.fragment_variable_values is not None or d.defer_usage is not None for d in details):
            plan = None
        else:
            try:
                plan = self._compile(return_type, details)
            except Exception:  # a selection graphql-core's collection refuses: it reports that itself
                plan = None
        if kept is not None:  # the type and nodes are held too, so that the ids in the key are not reused
            add_plan(kept, key, (return_type, nodes, plan))
        return plan

    def _directive_values(self, kept: Entry | None) -> tuple[Any, ...]:
        operation = self.operation
        names = kept.directive_names.get(id(operation)) if kept is not None else None
        if names is None:  # the operation is a node of the kept document: its id is not reused meanwhile
            collector = _DirectiveVariables()
            visit(operation, collector)
            for fragment in self.fragment_definitions.values():
                visit(fragment, collector)
            names = tuple(sorted(collector.names))
            if kept is not None:
                kept.directive_names[id(operation)] = names
        coerced = self.variable_values.coerced
        return tuple(coerced.get(name, Undefined) for name in names)

    # Compiling: one small function per type in the selection, or None when graphql-core must do it.

    def _compile(self, type_: GraphQLOutputType, details: FieldDetailsList) -> Completer | None:
        if isinstance(type_, GraphQLNonNull):
            inner = self._compile(type_.of_type, details)
            return None if inner is None else _non_null(inner)
        if isinstance(type_, GraphQLList):
            item = self._compile(type_.of_type, details)
            return None if item is None else _nullable(_list(item))
        if is_leaf_type(type_):
            return _leaf(type_)
        if isinstance(type_, GraphQLObjectType) and type_.is_type_of is None:
            obj = self._compile_object(type_, details)
            return None if obj is None else _nullable(obj)
        return None  # interfaces and unions, is_type_of checks

    def _compile_object(self, type_: GraphQLObjectType, details: FieldDetailsList) -> Completer | None:
        grouped, _defers, _forbidden = collect_subfields(
            self.schema, self.fragments, self.variable_values, self.operation, type_, details
        )
        entries: list[tuple[str, str | None, Any]] = []
        for response_key, sub_details in grouped.items():
            node = sub_details[0].node
            name = node.name.value
            if name == "__typename":
                entries.append((response_key, None, type_.name))
                continue
            field = type_.fields.get(name)
            # Only Strawberry's plain attribute fields: its resolver is then `getattr(source, python_name)`.
            if (
                field is None
                or field.args
                or node.arguments
                or not getattr(field.resolve, "_is_default", False)
            ):
                return None
            definition = (field.extensions or {}).get("strawberry-definition")
            if getattr(definition, "default_resolver", None) is not getattr:  # a configured default resolver
                return None
            attribute = getattr(definition, "python_name", None)
            sub = self._compile(field.type, sub_details)
            if attribute is None or sub is None:
                return None
            entries.append((response_key, attribute, sub))
        return _object(entries)


def _non_null(inner: Completer) -> Completer:
    def complete(value: Any) -> Any:
        if value is None:
            raise _Fallback
        return inner(value)

    return complete


def _nullable(inner: Completer) -> Completer:
    def complete(value: Any) -> Any:
        return None if value is None else inner(value)

    return complete


def _list(item: Completer) -> Completer:
    def complete(value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _Fallback  # graphql-core takes any iterable, and async ones: let it
        return [item(v) for v in value]

    return complete


def _leaf(type_: GraphQLLeafType) -> Completer:
    coerce = type_.coerce_output_value

    def complete(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Exception):
            raise _Fallback  # graphql-core raises a returned exception as the field's error
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Fallback
        return coerced

    return complete


def _object(entries: list[tuple[str, str | None, Any]]) -> Completer:
    def complete(value: Any) -> Any:
        if isinstance(value, Exception):
            raise _Fallback
        return {
            key: sub if attribute is None else sub(getattr(value, attribute))
            for key, attribute, sub in entries
        }

    return complete
