"""Each distinct document parsed and validated once, in one extension.

Strawberry's ParserCache parses in `on_parse` before yielding, so a syntax error escapes the parsing
step, skips every extension's post-operation hook and reaches the client without our error shape.
This one caches successful parses only; a document that does not parse is left for Strawberry's own
parser, whose error takes the normal path through the ErrorFormatter. Validation (GraphQL's rules and
ours: depth, aliases, cost, introspection) is cached per document and rule set. One extension rather
than Strawberry's ParserCache + AddValidationRules + ValidationCache: each is instantiated for every
request and every subscription, and runs its hooks there.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

MAX_DOCUMENTS = 512


@lru_cache(maxsize=MAX_DOCUMENTS)
def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def cached_parse(query: str, max_tokens: int) -> DocumentNode | None:
    """The parsed document, or None when it does not parse (the error is reported later)."""
    try:
        return _parse(query, max_tokens)
    except GraphQLError:
        return None


@lru_cache(maxsize=MAX_DOCUMENTS)
def _validate(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    return validate_document(schema, document, rules)  # Strawberry's: adds its own rules (OneOf, Maybe)


# Documents that passed validation, per schema: the view answers those without Strawberry's machinery
# (app.web.view, the direct lane). Keyed by identity, holding both objects so the ids are not reused.
_valid: dict[tuple[int, int], tuple[GraphQLSchema, DocumentNode]] = {}


def is_valid(schema: GraphQLSchema, document: DocumentNode) -> bool:
    """This very document object passed validation against this schema (the cached parse returns the
    same object for the same text, so a repeated document is known valid without validating again)."""
    entry = _valid.get((id(schema), id(document)))
    return entry is not None and entry[0] is schema and entry[1] is document


class DocumentCache(SchemaExtension):
    """Also enforces the token limit: the parser stops at `max_tokens` (QUERY_TOO_COMPLEX)."""

    def __init__(self, max_tokens: int, rules: tuple[type[ASTValidationRule], ...]) -> None:
        self.max_tokens = max_tokens
        self.rules = rules

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.parse_options = {**ctx.parse_options, "max_tokens": self.max_tokens}
        if ctx.query and ctx.graphql_document is None:
            try:
                ctx.graphql_document = _parse(ctx.query, self.max_tokens)
            except GraphQLError:
                pass  # reported by Strawberry's own parse (same options), inside its error handling
        yield

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.validation_rules = tuple(ctx.validation_rules) + self.rules
        schema, document = ctx.schema._schema, ctx.graphql_document
        ctx.pre_execution_errors = _validate(schema, document, ctx.validation_rules)
        if not ctx.pre_execution_errors and document is not None:
            if len(_valid) >= 2 * MAX_DOCUMENTS:
                _valid.clear()
            _valid[(id(schema), id(document))] = (schema, document)
        yield
