"""Each distinct document parsed and validated once, in one extension.

Strawberry's ParserCache parses in `on_parse` before yielding, so a syntax error escapes the parsing
step, skips every extension's post-operation hook and reaches the client without our error shape.
This one caches successful parses only; a document that does not parse is left for Strawberry's own
parser, whose error takes the normal path through the ErrorFormatter. Validation (GraphQL's rules and
ours: depth, aliases, cost, introspection) is cached per document and rule set. One extension rather
than Strawberry's ParserCache + AddValidationRules + ValidationCache: each is instantiated for every
request and every subscription, and runs its hooks there.

The caches are keyed by what clients send, so they are bounded in bytes as well as in entries: a
document longer than MAX_CACHED_BYTES (padding, comments) is parsed and validated for its request and not
kept. Before any validation rule, `repeated_fields` refuses hundreds of copies of one field (validation's
overlapping-fields rule is quadratic in them).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from app.graphql.limits import repeated_fields

MAX_DOCUMENTS = 512
MAX_CACHED_BYTES = 16_384  # 512 entries x 16 KiB: the cached query texts stay under 8 MiB


@lru_cache(maxsize=MAX_DOCUMENTS)
def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def _parse_bounded(query: str, max_tokens: int) -> DocumentNode:
    if len(query) > MAX_CACHED_BYTES:
        return parse(query, max_tokens=max_tokens)
    return _parse(query, max_tokens)


def cached_parse(query: str, max_tokens: int) -> DocumentNode | None:
    """The parsed document, or None when it does not parse (the error is reported later)."""
    try:
        return _parse_bounded(query, max_tokens)
    except GraphQLError:
        return None


def _validate_uncached(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    max_repeats: int,
) -> list[GraphQLError]:
    refused = repeated_fields(document, max_repeats)
    if refused is not None:
        return [GraphQLError(refused.message, original_error=refused)]
    return validate_document(schema, document, rules)  # Strawberry's: adds its own rules (OneOf, Maybe)


_validate = lru_cache(maxsize=MAX_DOCUMENTS)(_validate_uncached)


def _validate_bounded(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    max_repeats: int,
) -> list[GraphQLError]:
    loc = document.loc
    if loc is None or loc.end > MAX_CACHED_BYTES:  # the document keeps its source text alive
        return _validate_uncached(schema, document, rules, max_repeats)
    return _validate(schema, document, rules, max_repeats)


# Documents that passed validation, per schema: the view answers those without Strawberry's machinery
# (app.web.view, the direct lane). Keyed by identity, holding both objects so the ids are not reused;
# only cacheable documents (the parse cache returns the same object for the same text) are recorded.
_valid: dict[tuple[int, int], tuple[GraphQLSchema, DocumentNode]] = {}


def is_valid(schema: GraphQLSchema, document: DocumentNode) -> bool:
    """This very document object passed validation against this schema (the cached parse returns the
    same object for the same text, so a repeated document is known valid without validating again)."""
    entry = _valid.get((id(schema), id(document)))
    return entry is not None and entry[0] is schema and entry[1] is document


class DocumentCache(SchemaExtension):
    """Also enforces the token limit: the parser stops at `max_tokens` (QUERY_TOO_COMPLEX)."""

    def __init__(self, max_tokens: int, rules: tuple[type[ASTValidationRule], ...], max_repeats: int) -> None:
        self.max_tokens = max_tokens
        self.rules = rules
        self.max_repeats = max_repeats

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.parse_options = {**ctx.parse_options, "max_tokens": self.max_tokens}
        if ctx.query and ctx.graphql_document is None:
            try:
                ctx.graphql_document = _parse_bounded(ctx.query, self.max_tokens)
            except GraphQLError:
                pass  # reported by Strawberry's own parse (same options), inside its error handling
        yield

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.validation_rules = tuple(ctx.validation_rules) + self.rules
        assert ctx.graphql_document is not None  # validation runs only on a parsed document
        schema, document = ctx.schema._schema, ctx.graphql_document
        ctx.pre_execution_errors = _validate_bounded(schema, document, ctx.validation_rules, self.max_repeats)
        cacheable = document.loc is not None and document.loc.end <= MAX_CACHED_BYTES
        if not ctx.pre_execution_errors and cacheable:
            if len(_valid) >= 2 * MAX_DOCUMENTS:
                _valid.clear()
            _valid[(id(schema), id(document))] = (schema, document)
        yield
