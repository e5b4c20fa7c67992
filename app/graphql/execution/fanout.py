"""One event, many subscribers: the GraphQL work for a published event is done once per distinct
subscription operation (document and variables), not once per subscriber, and its JSON encoded once.

Each subscriber still runs its own Strawberry operation (auth, replay, its own ids and errors); what is
shared is the execution of the selection set on the event and the encoded `data`:

- `SharedViews` turns a published message (a status snapshot, an event record) into its GraphQL object
  once, for every subscriber of the topic, and marks it `shared`.
- `SharedResultsExecutor` (Strawberry's `execution_context_class`) memoizes, on such an object, the
  result of each operation that executed on it. Sharing across subscribers is correct because the
  types published this way (ServiceStatus, ErrorEvent) resolve their fields from the object alone,
  never from the context (who asks); whatever else shapes the result (the document, the operation,
  the variables) is the memo's key. Results with errors are never shared.
- `EncodedData` carries its JSON, encoded on first use; the WebSocket adapter splices it into each
  subscriber's `next` message (orjson.Fragment) instead of encoding the data again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson
from graphql import ExecutionResult

from app.graphql.execution.leaf_fields import LeafFieldsExecutor

Message = TypeVar("Message")
View = TypeVar("View")

_RESULTS = "_shared_results"  # the memo's attribute on a shared GraphQL object


class EncodedData(dict[str, Any]):
    """A result's `data`, shared by many subscribers, with its JSON encoded once."""

    __slots__ = ("_fragment",)
    _fragment: orjson.Fragment

    @property
    def fragment(self) -> orjson.Fragment:
        try:
            return self._fragment
        except AttributeError:
            self._fragment = orjson.Fragment(orjson.dumps(self))
            return self._fragment


class SharedViews(Generic[Message, View]):
    """The GraphQL object of each recently published message, built once for all its subscribers.
    Keyed by the message's identity (it is the same object in every subscriber's queue); the entry
    holds the message, so its id cannot be reused while it is remembered."""

    def __init__(self, build: Callable[[Message], View], size: int = 256) -> None:
        self._build = build
        self._size = size
        self._recent: OrderedDict[int, tuple[Message, View]] = OrderedDict()

    def __call__(self, message: Message) -> View:
        entry = self._recent.get(id(message))
        if entry is not None and entry[0] is message:
            return entry[1]
        view = self._build(message)
        setattr(view, _RESULTS, {})
        self._recent[id(message)] = (message, view)
        if len(self._recent) > self._size:
            self._recent.popitem(last=False)
        return view


def _variables_key(coerced: dict[str, Any]) -> bytes:
    # Sorted, so that the same values given in another order share; values orjson cannot encode
    # fall back to their repr, which at worst makes two subscribers not share.
    return orjson.dumps(coerced, option=orjson.OPT_SORT_KEYS, default=repr)


class _Executed:
    """Stands in for a per-event executor whose result is already known: graphql-core only calls
    `execute_operation` on it, and skips copying the executor for every subscriber."""

    __slots__ = ("result",)

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self.result


class SharedResultsExecutor(LeafFieldsExecutor):
    """graphql-core's executor, memoizing subscription events' results on shared event objects."""

    _memo: tuple[dict[tuple[int, bytes], tuple[Any, ExecutionResult]], tuple[int, bytes]] | None = None
    _memo_key: tuple[int, bytes] | None = None
    executions = 0  # shared executions so far, in this process (exported as a metric by app.web.metrics)

    def build_per_event_executor(self, payload: Any) -> Any:
        memo = getattr(payload, _RESULTS, None)
        if memo is None:
            return super().build_per_event_executor(payload)
        if self._memo_key is None:
            # The operation node is the same object for every subscriber of the same document text (the
            # parse cache); a memo entry holds it, so its id is not reused while the event is remembered.
            self._memo_key = (id(self.operation), _variables_key(self.variable_values.coerced))
        hit = memo.get(self._memo_key)
        if hit is not None and hit[0] is self.operation:
            return _Executed(hit[1])
        executor = super().build_per_event_executor(payload)
        if isinstance(executor, SharedResultsExecutor):
            executor._memo = (memo, self._memo_key)
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        result = super().execute_operation(serially)
        if self._memo is None:
            return result
        SharedResultsExecutor.executions += 1
        # Only synchronous, error-free results are shared (the published types resolve synchronously).
        if isinstance(result, ExecutionResult) and not result.errors and result.data is not None:
            result = ExecutionResult(EncodedData(result.data))
            memo, key = self._memo
            memo[key] = (self.operation, result)
        return result
