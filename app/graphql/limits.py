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

from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
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


def limit_rule(limits: Limits) -> type[ValidationRule]:
    class QueryLimitsRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            measure = _Measure()
            cost = self._selection(node.selection_set, node, 1, measure, set())
            problems = []
            if measure.depth > limits.max_depth:
                problems.append(
                    FieldProblem("depth", f"Depth {measure.depth} exceeds the limit of {limits.max_depth}")
                )
            if measure.aliases > limits.max_aliases:
                problems.append(
                    FieldProblem(
                        "aliases", f"{measure.aliases} aliases exceed the limit of {limits.max_aliases}"
                    )
                )
            if cost > limits.max_cost:
                problems.append(
                    FieldProblem("cost", f"Estimated cost {cost} exceeds the limit of {limits.max_cost}")
                )
            if problems:
                error = QueryTooComplex(details=problems)
                self.report_error(GraphQLError(error.message, node, original_error=error))

        def _selection(
            self,
            selection_set: SelectionSetNode | None,
            operation: OperationDefinitionNode,
            depth: int,
            measure: _Measure,
            fragments_seen: set[str],
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
                    inner = self._selection(
                        selection.selection_set, operation, depth + 1, measure, fragments_seen
                    )
                    total += 1 + inner * (_page_size(selection, operation) or 1)
                elif isinstance(selection, InlineFragmentNode):
                    total += self._selection(
                        selection.selection_set, operation, depth, measure, fragments_seen
                    )
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.context.get_fragment(name)
                    if fragment is None or name in fragments_seen:  # cycles are another rule's error
                        continue
                    total += self._selection(
                        fragment.selection_set, operation, depth, measure, fragments_seen | {name}
                    )
            return total

    return QueryLimitsRule
