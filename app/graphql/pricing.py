"""What an operation costs the credential's budget, known before it executes (variables included)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
)

from app.graphql.limits import STATS_FIELD, stats_read_units
from app.ratelimit.service import Resource

MAX_UNITS = 1000  # a document within the query limits holds far fewer errorStats fields


def _argument(field: FieldNode, name: str, variables: Mapping[str, Any]) -> str | None:
    for argument in field.arguments or ():
        if argument.name.value != name:
            continue
        value = argument.value
        if isinstance(value, VariableNode):
            found = variables.get(value.name.value)
            return found if isinstance(found, str) else None
        if isinstance(value, (StringValueNode, EnumValueNode)):
            return value.value
    return None


def read_units(
    document: DocumentNode, operation: OperationDefinitionNode, variables: Mapping[str, Any]
) -> int:
    """One unit for the request, plus what each root errorStats field scans (each copy under an alias
    counts)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    units = 1
    stack: list[SelectionSetNode] = [operation.selection_set]
    visited: set[str] = set()
    while stack and units < MAX_UNITS:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode) and selection.name.value == STATS_FIELD:
                units += stats_read_units(
                    _argument(selection, "from", variables),
                    _argument(selection, "to", variables),
                    _argument(selection, "interval", variables),
                )
            elif isinstance(selection, InlineFragmentNode):
                stack.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in visited:
                    visited.add(selection.name.value)
                    stack.append(fragment.selection_set)
    return min(units, MAX_UNITS)


def price(
    document: DocumentNode, operation: OperationDefinitionNode, variables: Mapping[str, Any]
) -> tuple[Resource, int]:
    """Mutations spend the write budget, one unit per root field (each logError); the rest read units
    (above). One function for the view's full path and its direct lane, so a request handed from one
    to the other is charged once and the same."""
    if operation.operation is OperationType.MUTATION:
        return Resource.WRITE, max(1, len(operation.selection_set.selections))
    return Resource.READ, read_units(document, operation, variables)
