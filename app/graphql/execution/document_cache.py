"""Each distinct document parsed and validated once, in one extension.

Strawberry's ParserCache parses in `on_parse` before yielding, so a syntax error escapes the parsing
step, skips every extension's post-operation hook and reaches the client without our error shape.
This one caches successful parses only; a document that does not parse is left for Strawberry's own
parser, whose error takes the normal path through the ErrorFormatter. Validation (GraphQL's rules and
ours: depth, aliases, cost, introspection) is cached per document and rule set. One extension rather
than Strawberry's ParserCache + AddValidationRules + ValidationCache: each is instantiated for every
request and every subscription, and runs its hooks there.

The cache is keyed by what clients send, so it is bounded by what a parsed document weighs, not only
by entries. A parsed document costs 300 to 550 bytes per token (nodes, locations, the token chain;
tracemalloc: 400 for aliased fields, 320 for `f(a:1)` runs, 190 for comments, which are tokens too),
so a dense document of 2,000 tokens in 4 KB is up to about 1 MB of objects. Every document kept is counted
by its tokens (counted by the parser) and all of them together stay within TOKEN_BUDGET; the least
recently used go first. What else is kept per document lives in its entry and goes with it: its
validation results and the compiled plans (app.graphql.execution.compiled), which hold the document's
nodes and through them its text and tokens. So one budget bounds all three, and nothing outside the
cache keeps a document alive. A document over MAX_DOCUMENT_TOKENS or longer than MAX_CACHED_BYTES
(padding, comments, long strings) is parsed and validated for its request and not kept.

No setting: with the default token limit (MAX_QUERY_TOKENS, 2,000) every document within the limits can
be kept, a flood of the densest distinct documents holds at most about 25-35 MB, and ordinary documents
(tens to a few hundred tokens) fill the 512 entries long before the budget.

Before any validation rule, `repeated_fields` refuses hundreds of copies of one field (validation's
overlapping-fields rule is quadratic in them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, Node
from graphql.language.parser import Parser, nested_too_deeply_error
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from app.graphql.limits import repeated_fields

MAX_DOCUMENTS = 512
MAX_CACHED_BYTES = 16_384  # 512 entries x 16 KiB: the cached query texts stay under 8 MiB
TOKEN_BUDGET = 64_000  # tokens of all kept documents together: about 35 MB of parsed objects at most
MAX_DOCUMENT_TOKENS = TOKEN_BUDGET // 32  # 2,000: a document over its share is parsed but not kept
MAX_PLANS = 1024  # compiled plans kept, all documents together (each also bounded by its document)

_Rules = tuple[type[ASTValidationRule], ...]


@dataclass(slots=True, eq=False)
class Entry:
    """A kept document and what is derived from it, dropped together."""

    document: DocumentNode
    tokens: int
    validations: dict[tuple[GraphQLSchema, _Rules, int], list[GraphQLError]] = field(default_factory=dict)
    valid_for: list[GraphQLSchema] = field(default_factory=list)  # schemas it passed validation against
    # app.graphql.execution.compiled: plan key -> plan; operation id -> its directive variable names
    plans: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    directive_names: dict[int, tuple[str, ...]] = field(default_factory=dict)


class _Cache:
    """LRU by (text, token limit), bounded in entries and in tokens; also found by the document's
    source object (every node's `loc.source`), so validation, the direct lane and the plans find the
    entry of a document they hold."""

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple[str, int], Entry] = OrderedDict()
        self.by_source: dict[int, tuple[tuple[str, int], Entry]] = {}
        self.tokens = 0
        self.plans = 0
        self.parsed = 0  # documents parsed (cache misses and documents not kept), for tests and benches
        self.validated = 0  # validations run (cache misses and documents not kept)
        self.lock = threading.Lock()  # the server's loop and a test's thread may share the module

    def parse(self, query: str, max_tokens: int) -> DocumentNode:
        key = (query, max_tokens)
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.entries.move_to_end(key)
                return entry.document
        parser = Parser(query, max_tokens=max_tokens)
        try:  # as graphql.parse, which does not tell the token count
            document = parser.parse_document()
        except RecursionError:
            raise nested_too_deeply_error(parser) from None
        tokens = parser.token_count
        with self.lock:
            self.parsed += 1
            if len(query) > MAX_CACHED_BYTES or tokens > MAX_DOCUMENT_TOKENS or document.loc is None:
                return document
            if key in self.entries:  # parsed meanwhile by another thread
                return self.entries[key].document
            while self.entries and (
                len(self.entries) >= MAX_DOCUMENTS or self.tokens + tokens > TOKEN_BUDGET
            ):
                _, old = self.entries.popitem(last=False)
                self._forget(old)
            entry = Entry(document, tokens)
            self.entries[key] = entry
            self.by_source[id(document.loc.source)] = (key, entry)
            self.tokens += tokens
        return document

    def _forget(self, entry: Entry) -> None:
        assert entry.document.loc is not None
        self.by_source.pop(id(entry.document.loc.source), None)
        self.tokens -= entry.tokens
        self.plans -= len(entry.plans)

    def entry(self, node: Node) -> Entry | None:
        """The entry of the kept document this node belongs to, if any."""
        loc = node.loc
        if loc is None:
            return None
        found = self.by_source.get(id(loc.source))
        if found is None or found[1].document.loc is None or found[1].document.loc.source is not loc.source:
            return None
        return found[1]

    def add_plan(self, entry: Entry, key: tuple[Any, ...], plan: Any) -> None:
        with self.lock:
            if entry.document.loc is None or self.by_source.get(id(entry.document.loc.source)) is None:
                return  # evicted meanwhile: keep nothing for it
            if self.plans >= MAX_PLANS:
                for kept in self.entries.values():
                    kept.plans.clear()
                    kept.directive_names.clear()
                self.plans = 0
            if key not in entry.plans:
                self.plans += 1
            entry.plans[key] = plan

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.by_source.clear()
            self.tokens = self.plans = 0


_cache = _Cache()


def sizes() -> dict[str, int]:
    """What the cache holds (documents, their tokens: the budget's unit, plans) and what it did not spare
    (documents parsed, validations run)."""
    return {
        "documents": len(_cache.entries),
        "tokens": _cache.tokens,
        "plans": _cache.plans,
        "parsed": _cache.parsed,
        "validated": _cache.validated,
    }


def entry_of(node: Node) -> Entry | None:
    """The cache entry of the kept document a node belongs to (None: the document is not kept)."""
    return _cache.entry(node)


def add_plan(entry: Entry, key: tuple[Any, ...], plan: Any) -> None:
    """Keep a compiled plan with its document (counted against MAX_PLANS, all documents together)."""
    _cache.add_plan(entry, key, plan)


def cached_parse(query: str, max_tokens: int) -> DocumentNode | None:
    """The parsed document, or None when it does not parse (the error is reported later)."""
    try:
        return _cache.parse(query, max_tokens)
    except GraphQLError:
        return None


def _validate_uncached(
    schema: GraphQLSchema, document: DocumentNode, rules: _Rules, max_repeats: int
) -> list[GraphQLError]:
    _cache.validated += 1
    refused = repeated_fields(document, max_repeats)
    if refused is not None:
        return [GraphQLError(refused.message, original_error=refused)]
    return validate_document(schema, document, rules)  # Strawberry's: adds its own rules (OneOf, Maybe)


def _validate(
    schema: GraphQLSchema, document: DocumentNode, rules: _Rules, max_repeats: int
) -> list[GraphQLError]:
    entry = _cache.entry(document)
    if entry is None or entry.document is not document:  # not kept: validated for this request only
        return _validate_uncached(schema, document, rules, max_repeats)
    key = (schema, rules, max_repeats)
    errors = entry.validations.get(key)
    if errors is None:
        errors = entry.validations[key] = _validate_uncached(schema, document, rules, max_repeats)
        if not errors and schema not in entry.valid_for:
            entry.valid_for.append(schema)
    return errors


def is_valid(schema: GraphQLSchema, document: DocumentNode) -> bool:
    """This very document object is kept and passed validation against this schema (the cached parse
    returns the same object for the same text, so a repeated document is known valid without validating
    again). The direct lane (app.web.view) answers those without Strawberry's machinery."""
    entry = _cache.entry(document)
    return entry is not None and entry.document is document and any(s is schema for s in entry.valid_for)


class DocumentCache(SchemaExtension):
    """Also enforces the token limit: the parser stops at `max_tokens` (QUERY_TOO_COMPLEX)."""

    def __init__(self, max_tokens: int, rules: _Rules, max_repeats: int) -> None:
        self.max_tokens = max_tokens
        self.rules = rules
        self.max_repeats = max_repeats

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.parse_options = {**ctx.parse_options, "max_tokens": self.max_tokens}
        if ctx.query and ctx.graphql_document is None:
            try:
                ctx.graphql_document = _cache.parse(ctx.query, self.max_tokens)
            except GraphQLError:
                pass  # reported by Strawberry's own parse (same options), inside its error handling
        yield

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.validation_rules = tuple(ctx.validation_rules) + self.rules
        assert ctx.graphql_document is not None  # validation runs only on a parsed document
        schema, document = ctx.schema._schema, ctx.graphql_document
        ctx.pre_execution_errors = _validate(schema, document, ctx.validation_rules, self.max_repeats)
        yield
