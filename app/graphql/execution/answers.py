"""Response bytes of documents answered from in-memory state, reused until that state changes.

`serviceStatus` is read from the status service's memory: the same document (and variables) gives the
same bytes for every authenticated caller until a component's state changes. Executing it again costs
graphql-core's operation set-up, Strawberry's resolver wrapper, building the `ServiceStatus` objects
and encoding them, for an answer already sent. So the view's direct lane keeps the body it sent,
with the *state key* it was computed from, and answers the same document from it while the key is
equal. Authentication, the budget charge, the log line and metrics still happen for every request:
only execution and encoding are skipped.

The state key is the state itself, compared by equality (the status service's components, frozen
dataclasses, and the position of its latest transition), not a version number that every writer
would have to remember to bump: a change the key does not see cannot exist.

What may be reused (decided once per document, conservatively):

- every root field of the operation is one of `MEMORY_FIELDS` (directly, no root fragments): anything
  else reads the database, depends on arguments the key does not hold, or on the caller;
- no field anywhere in the document is one of `CLOCK_FIELDS`: `ServiceStatus.timestamp` is the time
  of the answer, different on every request;
- the body is only stored from an execution without errors, by an authenticated caller (the resolver
  refuses anonymous ones: an anonymous request never reaches the cache), and only if the state key is
  the same after execution as before.

The key holds the document object (from the document cache: the same text gives the same object), the
operation name and the variables as sent (sorted JSON), so directives reading variables stay exact.
Counters (per process): `hits` answers sent from the cache, `stored` bodies stored.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import orjson
from graphql import DocumentNode, FieldNode, OperationDefinitionNode, visit
from graphql.language import Visitor

from app.graphql.context import Services
from app.graphql.execution.document_cache import MAX_CACHED_BYTES

StateKey = Callable[[Services], Hashable]
MAX_ANSWERS = 256  # distinct (document, operation name, variables) bodies kept; emptied past that


class _FieldNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.names.add(node.name.value)


class AnswerCache:
    hits = 0
    stored = 0

    def __init__(self, memory_fields: Mapping[str, StateKey], clock_fields: frozenset[str]) -> None:
        self._memory_fields = memory_fields
        self._clock_fields = clock_fields
        # id(operation) -> (operation, the state-key functions of its root fields, or None: not reusable)
        self._reusable: dict[int, tuple[OperationDefinitionNode, tuple[StateKey, ...] | None]] = {}
        # (id(document), operation name, variables) -> (document, state key, body)
        self._bodies: dict[tuple[int, str | None, bytes], tuple[DocumentNode, Hashable, bytes]] = {}

    def state(
        self, document: DocumentNode, operation: OperationDefinitionNode, services: Services
    ) -> Hashable | None:
        """The state the operation's answer depends on, or None when its answer must be computed."""
        entry = self._reusable.get(id(operation))
        if entry is None or entry[0] is not operation:
            entry = (operation, self._state_keys(document, operation))
            if len(self._reusable) >= 2 * MAX_ANSWERS:
                self._reusable.clear()
            self._reusable[id(operation)] = entry
        keys = entry[1]
        if keys is None:
            return None
        return tuple(key(services) for key in keys)

    def _state_keys(
        self, document: DocumentNode, operation: OperationDefinitionNode
    ) -> tuple[StateKey, ...] | None:
        loc = document.loc
        if loc is None or loc.end > MAX_CACHED_BYTES:  # not a cached document: never met again
            return None
        keys: list[StateKey] = []
        for selection in operation.selection_set.selections:
            if not isinstance(selection, FieldNode) or selection.name.value not in self._memory_fields:
                return None
            key = self._memory_fields[selection.name.value]
            if key not in keys:
                keys.append(key)
        names = _FieldNames()
        visit(document, names)
        if names.names & self._clock_fields:
            return None
        return tuple(keys)

    @staticmethod
    def _key(
        document: DocumentNode, name: str | None, variables: dict[str, Any] | None
    ) -> tuple[int, str | None, bytes]:
        sent = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS) if variables else b""
        return id(document), name, sent

    def get(
        self, document: DocumentNode, name: str | None, variables: dict[str, Any] | None, state: Hashable
    ) -> bytes | None:
        entry = self._bodies.get(self._key(document, name, variables))
        if entry is None or entry[0] is not document or entry[1] != state:
            return None
        AnswerCache.hits += 1
        return entry[2]

    def put(
        self,
        document: DocumentNode,
        name: str | None,
        variables: dict[str, Any] | None,
        state: Hashable,
        body: bytes,
    ) -> None:
        if len(self._bodies) >= MAX_ANSWERS:
            self._bodies.clear()
        self._bodies[self._key(document, name, variables)] = (document, state, body)
        AnswerCache.stored += 1
