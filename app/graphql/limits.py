"""Refusing abusive documents before execution: depth, aliases, tokens, repeated fields and a cost.

Depth, aliases and cost are one graphql-core validation rule, so they run (and are cached) with the
rest of validation; the token limit is enforced by the parser, and repeated fields by `repeated_fields`
before validation (see DocumentCache). Every exceeded limit is listed in the QUERY_TOO_COMPLEX error's
details. Introspection (`__schema`, `__type`) is measured for aliases and cost but not for depth, so
GraphiQL's introspection query (nested `ofType`) keeps working.

Each fragment is measured once and its measure reused at every spread: a chain of fragments that each
spread the next twice is measured in linear time, and its cost (which doubles per level) is refused.

Cost: every field costs 1; a field with a `first` argument multiplies the cost of what it selects by
that page size. A `first` given as a variable counts as the variable's default, or the largest page (100)
when it has none: validation runs before variables are known, and the estimate must not be talked down.
`errorStats` costs one per bucket it may return (its range divided by its interval when both are written
in the document, else the most buckets it allows).

Repeated fields: validation's OverlappingFieldsCanBeMerged rule compares every pair of fields that share a
response key, so hundreds of copies of one field cost seconds of CPU. `repeated_fields` counts, in each
selection set (fragments included), the fields under each response key, and refuses more than
`max_repeats` before any validation rule runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graphql import (
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    VariableNode,
    get_operation_ast,
)

from app.core.errors import FieldProblem, QueryTooComplex

UNKNOWN_PAGE = 100
STATS_FIELD = "errorStats"
STATS_MAX_BUCKETS = 1000  # app.stats.service.MAX_BUCKETS
_INTERVAL_MS = {"MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_HUGE = 10**18  # a cost above any limit, and far from overflow worries (Python ints do not overflow)


@dataclass(frozen=True)
class Limits:
    """The defaults here are the settings' defaults (MAX_QUERY_*)."""

    max_depth: int = 10
    max_aliases: int = 20
    max_tokens: int = 2000
    max_cost: int = 5000
    max_repeats: int = 20


@dataclass(frozen=True, slots=True)
class _Measure:
    """Of a selection set: its depth below the point it is used, its aliases and its cost."""

    depth: int = 0
    aliases: int = 0
    cost: int = 0


def _page_size(field: FieldNode, operation: OperationDefinitionNode) -> int | None:
    for argument in field.arguments or ():
        if argument.name.value != "first":
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            # A page size of 5,000 digits is refused by the argument's own validation; here it is huge.
            return max(int(value.value), 1) if len(value.value) <= 18 else _HUGE
        if isinstance(value, VariableNode):
            default = _variable_default(value, operation)
            if isinstance(default, IntValueNode):
                return max(int(default.value), 1) if len(default.value) <= 18 else _HUGE
            return UNKNOWN_PAGE
    return None


def _variable_default(value: VariableNode, operation: OperationDefinitionNode) -> Any:
    for definition in operation.variable_definitions or ():
        if definition.variable.name.value == value.name.value:
            return definition.default_value
    return None


def _literal(field: FieldNode, name: str, operation: OperationDefinitionNode) -> str | None:
    for argument in field.arguments or ():
        if argument.name.value == name:
            value = argument.value
            if isinstance(value, VariableNode):
                value = _variable_default(value, operation)
            if isinstance(value, (StringValueNode, EnumValueNode)):
                return value.value
    return None


def stats_buckets(start: str | None, end: str | None, interval: str | None) -> int:
    """The buckets an errorStats call may return; the most it allows when the range is not known."""
    step = _INTERVAL_MS.get(interval or "HOUR", _INTERVAL_MS["HOUR"])
    try:
        span = datetime.fromisoformat(end or "") - datetime.fromisoformat(start or "")
        buckets = int(span.total_seconds() * 1000) // step + 1
    except (ValueError, TypeError, OverflowError):
        return STATS_MAX_BUCKETS
    return min(max(buckets, 1), STATS_MAX_BUCKETS)


def _field_weight(field: FieldNode, operation: OperationDefinitionNode) -> int:
    if field.name.value == STATS_FIELD:
        return stats_buckets(
            _literal(field, "from", operation),
            _literal(field, "to", operation),
            _literal(field, "interval", operation),
        )
    return 1


def measure(
    operation: OperationDefinitionNode, get_fragment: Callable[[str], FragmentDefinitionNode | None]
) -> tuple[int, int, int]:
    """(estimated cost, depth, aliases) of one operation, as the limits count them; each fragment is
    measured once (memo) and reused at every spread."""
    found = _selection(operation.selection_set, operation, False, {}, set(), get_fragment)
    return found.cost, found.depth, found.aliases


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
    introspection: bool,
    memo: dict[str, _Measure],
    in_progress: set[str],
    get_fragment: Callable[[str], FragmentDefinitionNode | None],
) -> _Measure:
    """The measure of `selection_set` relative to where it is used (depth 1 for its fields)."""
    if selection_set is None:
        return _Measure()
    depth = aliases = cost = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            aliases += selection.alias is not None
            if name == "__typename":
                continue
            inside = introspection or name.startswith("__")
            inner = _selection(selection.selection_set, operation, inside, memo, in_progress, get_fragment)
            if not inside:  # introspection types nest deeply (ofType): no depth for them
                depth = max(depth, 1 + inner.depth)
            aliases += inner.aliases
            page = _page_size(selection, operation) or 1
            cost += _field_weight(selection, operation) + inner.cost * page
        elif isinstance(selection, InlineFragmentNode):
            inner = _selection(
                selection.selection_set, operation, introspection, memo, in_progress, get_fragment
            )
            depth, aliases, cost = max(depth, inner.depth), aliases + inner.aliases, cost + inner.cost
        elif isinstance(selection, FragmentSpreadNode):
            inner = _fragment(selection.name.value, operation, introspection, memo, in_progress, get_fragment)
            depth, aliases, cost = max(depth, inner.depth), aliases + inner.aliases, cost + inner.cost
        cost = min(cost, _HUGE)
        aliases = min(aliases, _HUGE)
    return _Measure(depth, aliases, cost)


def _fragment(
    name: str,
    operation: OperationDefinitionNode,
    introspection: bool,
    memo: dict[str, _Measure],
    in_progress: set[str],
    get_fragment: Callable[[str], FragmentDefinitionNode | None],
) -> _Measure:
    key = f"{introspection}:{name}"
    if key in memo:
        return memo[key]
    fragment = get_fragment(name)
    if fragment is None or name in in_progress:  # unknown fragments and cycles: other rules' errors
        return _Measure()
    in_progress.add(name)
    try:
        found = _selection(fragment.selection_set, operation, introspection, memo, in_progress, get_fragment)
    finally:
        in_progress.discard(name)
    memo[key] = found
    return found


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
                shown = str(cost) if cost < _HUGE else "beyond reckoning"
                problems.append(
                    FieldProblem("cost", f"Estimated cost {shown} exceeds the limit of {limits.max_cost}")
                )
            if problems:
                error = QueryTooComplex(details=problems)
                self.report_error(GraphQLError(error.message, node, original_error=error))

    return QueryLimitsRule


def repeated_fields(document: DocumentNode, max_repeats: int) -> QueryTooComplex | None:
    """QUERY_TOO_COMPLEX when a selection set holds more than `max_repeats` fields under one response key
    (counting the fields of the fragments it spreads, each distinct fragment once, as the overlap rule
    does). Linear in the document: each fragment's own counts are computed once."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    memo: dict[str, Counter[str]] = {}
    worst: list[tuple[str, int]] = []

    def keys_of(selection_set: SelectionSetNode, seen: frozenset[str]) -> Counter[str]:
        counts: Counter[str] = Counter()
        spreads: set[str] = set()
        stack = [selection_set]
        while stack:
            current = stack.pop()
            for selection in current.selections:
                if isinstance(selection, FieldNode):
                    key = (selection.alias or selection.name).value
                    counts[key] += 1
                    if selection.selection_set is not None:
                        check(selection.selection_set, seen)
                elif isinstance(selection, InlineFragmentNode):
                    stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    spreads.add(selection.name.value)
        for name in spreads:
            counts.update(fragment_keys(name, seen))
        return counts

    def fragment_keys(name: str, seen: frozenset[str]) -> Counter[str]:
        if name in memo:
            return memo[name]
        fragment = fragments.get(name)
        if fragment is None or name in seen:
            return Counter()
        memo[name] = keys_of(fragment.selection_set, seen | {name})
        return memo[name]

    def check(selection_set: SelectionSetNode, seen: frozenset[str]) -> None:
        for key, count in keys_of(selection_set, seen).items():
            if count > max_repeats and len(worst) < 5:
                worst.append((key, count))

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            check(definition.selection_set, frozenset())
            if worst:
                break
    if not worst:
        return None
    return QueryTooComplex(
        details=[
            FieldProblem(
                "fields",
                f"{count} fields named {key!r} in one selection set exceed the limit of {max_repeats}: "
                "ask for a field once, or give each copy an alias",
            )
            for key, count in worst
        ]
    )


def stats_read_units(start: str | None, end: str | None, interval: str | None) -> int:
    """Rate-limit read units of one errorStats call: the database scans the whole range and groups it
    into buckets, so the price grows with both (1 unit per 50 buckets and per 30 days), at most 30."""
    buckets = stats_buckets(start, end, interval)
    try:
        days = (datetime.fromisoformat(end or "") - datetime.fromisoformat(start or "")).days
    except (ValueError, TypeError, OverflowError):
        days = 30 * 30
    return min(30, 1 + -(-buckets // 50) + max(days, 0) // 30)


def document_too_long(query: object, max_bytes: int) -> QueryTooComplex | None:
    """Parsing costs about 0.3 ms per KiB whatever the tokens are (comments, whitespace): a document
    longer than MAX_QUERY_BYTES is refused before it is parsed."""
    if isinstance(query, str) and len(query) > max_bytes:
        message = f"The document is {len(query)} characters long; at most {max_bytes}"
        return QueryTooComplex(details=[FieldProblem("document", message)])
    return None
