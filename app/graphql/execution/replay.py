"""Tape and replay: a mutation's root fields run once, even when two paths answer the request.

The view's direct lane (app.web.view) executes a repeated document with graphql-core and answers it
only if it succeeds; anything with errors is handed to Strawberry's full path, which executes it again
and reports the errors exactly as always. Executing a query twice costs time only; a mutation twice
would repeat its side effects (two events stored, a conflict reported for the first one's idempotency
key). So on the lane a mutation runs with a `Tape` on its context: the outcome of each root field's
resolver (the value it returned, or awaited, or the exception it raised) is recorded by response key.
When the lane hands the request over, the tape goes with it in replay mode, and the full path's
execution gives each taped root field its recorded outcome instead of calling the resolver (a root
field not on the tape runs normally). Everything after the resolver (completing the value, the errors,
their log line, the HTTP status) is the full path's own, from the same outcomes.

How: graphql-core reads a field's resolver once, synchronously, at the start of `execute_field`
(`middleware_manager.get_field_resolver(field.resolve)`). For a root field of a mutation whose context
carries a tape, `ReplayExecutor.execute_field` puts a small stand-in middleware manager in place for
that call; its `get_field_resolver` restores the real one at once (the field's own selection is
completed with it) and returns the resolver wrapped by the tape, composed inside the real manager's
middleware if there is any. Nothing shared (the schema, its fields) is patched, and the stand-in's
empty `middlewares` keeps the fast paths (leaf fields, compiled plans) open.

What is never taped: a `BaseException` that is not an `Exception` (a cancelled request, a shutdown):
the request ends there and nothing is handed over. A replay tape gives each outcome once (it is
popped), and the view hands a tape to one context only.

Counters (class attributes, per process): `Tape.recorded` outcomes recorded, `Tape.replayed` outcomes
given back instead of running a resolver.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from graphql import GraphQLResolveInfo, OperationType
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

Resolver = Any  # graphql-core's GraphQLFieldResolver: (source, info, **args) -> value or awaitable


class _Outcome(NamedTuple):
    value: Any
    error: Exception | None


class Tape:
    """The outcomes of one mutation's root fields, by response key."""

    __slots__ = ("_outcomes", "replaying")
    recorded = 0
    replayed = 0

    def __init__(self) -> None:
        self._outcomes: dict[str, _Outcome] = {}
        self.replaying = False

    def __len__(self) -> int:
        return len(self._outcomes)

    def for_replay(self) -> Tape:
        """This tape, from now on giving back what it recorded (and recording nothing more)."""
        self.replaying = True
        return self

    def wrap(self, key: str, resolve: Resolver) -> Resolver:
        """`resolve`, recording its outcome under `key`; in replay mode, the recorded outcome instead
        (once), or `resolve` itself for a field the tape does not hold."""
        if self.replaying:
            outcome = self._outcomes.pop(key, None)
            if outcome is None:
                return resolve
            return _replay(outcome)
        return self._recording(key, resolve)

    def _record(self, key: str, value: Any, error: Exception | None) -> None:
        self._outcomes[key] = _Outcome(value, error)
        Tape.recorded += 1

    def _recording(self, key: str, resolve: Resolver) -> Resolver:
        def recording(source: Any, info: GraphQLResolveInfo[Any], **args: Any) -> Any:
            try:
                result = resolve(source, info, **args)
            except Exception as error:  # not BaseException: a cancellation is no outcome to replay
                self._record(key, None, error)
                raise
            if not optimized_is_awaitable(result):
                self._record(key, result, None)
                return result

            async def awaited() -> Any:
                try:
                    value = await result
                except Exception as error:
                    self._record(key, None, error)
                    raise
                self._record(key, value, None)
                return value

            return awaited()

        return recording


def _replay(outcome: _Outcome) -> Resolver:
    def replayed(source: Any, info: GraphQLResolveInfo[Any], **args: Any) -> Any:
        Tape.replayed += 1
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    return replayed


class _TapeManager:
    """Stands in for the executor's middleware manager during one root field's `execute_field`."""

    __slots__ = ("executor", "key", "middlewares", "saved", "tape")

    def __init__(self, executor: ReplayExecutor, saved: Any, tape: Tape, key: str) -> None:
        self.executor = executor
        self.saved = saved
        self.tape = tape
        self.key = key
        # The real manager's middleware, if any, so that `_no_middleware()` answers as without the tape.
        self.middlewares = saved.middlewares if saved is not None else ()

    def __bool__(self) -> bool:
        return True  # graphql-core asks `if self.middleware_manager:`

    def get_field_resolver(self, resolve: Resolver) -> Resolver:
        self.executor.middleware_manager = self.saved  # the field's sub-selection sees the real one
        taped = self.tape.wrap(self.key, resolve)
        return self.saved.get_field_resolver(taped) if self.saved else taped


class ReplayExecutor(StrawberryGraphQLCoreExecutionContext):
    """Records (or replays) the root fields of a mutation whose context carries a `Tape`."""

    def execute_field(
        self,
        parent_type: Any,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        # (Every field passes here: the cheap tests first.)
        tape = (
            getattr(self.context_value, "tape", None)
            if path.prev is None and self.operation.operation is OperationType.MUTATION
            else None
        )
        if tape is None:
            return super().execute_field(parent_type, source, field_details_list, path, position_context)
        saved = self.middleware_manager
        self.middleware_manager = _TapeManager(self, saved, tape, path.key)  # type: ignore[assignment]
        try:
            return super().execute_field(parent_type, source, field_details_list, path, position_context)
        finally:
            self.middleware_manager = saved
