"""Refusing abusive documents before execution: depth, aliases, tokens and an estimated cost.

Depth, aliases and cost are one graphql-core validation rule, so they run (and are cached) with the
rest of validation; the token limit is enforced by the parser (see DocumentCache). Every exceeded limit is
listed in the QUERY_TOO_COMPLEX error's details. Introspection fields (`__schema`, `__type`) are not
counted, so GraphiQL keeps working.

Cost: every field costs 1; a field with a `first` argument multiplies the cost of what it selects by
that page size. A `first` given as a variable counts as the variable's default, or the largest page (100)
when it has none: validation runs before variables are known, and the estimate must not be talked down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
    get_operation_ast,
)

from app.core.errors import FieldProblem, QueryTooComplex

UNKNOWN_PAGE = 100


@dataclass(frozen=True)
class Limits:
    """The defaults here are the settings' defaults (MAX_QUERY_*)."""

    max_depth: int = 10
    max_aliases: int = 20
    max_tokens: int = 2000
    max_cost: int = 5000


@dataclass(slots=True)
class _Measure:
    depth: int = 0
    aliases: int = 0
    cost: int = 0


def _page_size(field: FieldNode, operation: OperationDefinitionNode) -> int | None:
    for argument in field.arguments or ():
        if argument.name.value != "first":
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return max(int(value.value), 1)
        if isinstance(value, VariableNode):
            for definition in operation.variable_definitions or ():
                default = definition.default_value
                if definition.variable.name.value == value.name.value and isinstance(default, IntValueNode):
                    return max(int(default.value), 1)
            return UNKNOWN_PAGE
    return None


def measure(
    operation: OperationDefinitionNode, get_fragment: Callable[[str], FragmentDefinitionNode | None]
) -> tuple[int, int, int]:
    """(estimated cost, depth, aliases) of one operation, as the limits count them."""
    measure = _Measure()
    cost = _selection(operation.selection_set, operation, 1, measure, set(), get_fragment)
    return cost, measure.depth, measure.aliases


def operation_cost(document: DocumentNode, operation_name: str | None) -> int | None:
    """The estimated cost of the operation a request runs (None when it names none of the document's)."""
    try:
        operation = get_operation_ast(document, operation_name)
    except GraphQLError:
        return None
    if operation is None:
        return None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return measure(operation, fragments.get)[0]


def _selection(
    selection_set: SelectionSetNode | None,
    operation: OperationDefinitionNode,
    depth: int,
    measure: _Measure,
    fragments_seen: set[str],
    get_fragment: Callable[[str], FragmentDefinitionNode | None],
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            measure.depth = max(measure.depth, depth)
            measure.aliases += selection.alias is not None
            inner = _selection(
                selection.selection_set, operation, depth + 1, measure, fragments_seen, get_fragment
            )
            total += 1 + inner * (_page_size(selection, operation) or 1)
        elif isinstance(selection, InlineFragmentNode):
            total += _selection(
                selection.selection_set, operation, depth, measure, fragments_seen, get_fragment
            )
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = get_fragment(name)
            if fragment is None or name in fragments_seen:  # cycles are another rule's error
                continue
            total += _selection(
                fragment.selection_set, operation, depth, measure, fragments_seen | {name}, get_fragment
            )
    return total


def limit_rule(limits: Limits) -> type[ValidationRule]:
    class QueryLimitsRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost, depth, aliases = measure(node, self.context.get_fragment)
            problems = []
            if depth > limits.max_depth:
                problems.append(
                    FieldProblem("depth", f"Depth {depth} exceeds the limit of {limits.max_depth}")
                )
            if aliases > limits.max_aliases:
                problems.append(
                    FieldProblem("aliases", f"{aliases} aliases exceed the limit of {limits.max_aliases}")
                )
            if cost > limits.max_cost:
                problems.append(
                    FieldProblem("cost", f"Estimated cost {cost} exceeds the limit of {limits.max_cost}")
                )
            if problems:
                error = QueryTooComplex(details=problems)
                self.report_error(GraphQLError(error.message, node, original_error=error))

    return QueryLimitsRule
