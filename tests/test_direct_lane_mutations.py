"""Mutations on the view's direct lane: tape and replay (app.graphql.execution.replay).

Differential, over HTTP: each document is sent with the direct lane off (Strawberry's full path, which
also validates it) and then with the lane on, and the two answers must be the same (status, headers and
body, apart from the ids, times and positions that differ between two events), while each request's
side effect happens exactly once (events counted through the API, calls of a failing service counted).
Successes are answered by the lane (counted); failures are handed to the full path, which replays the
lane's outcomes (counted) instead of running a resolver again. Units: what is never taped, and that a
replay tape gives each outcome once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from ulid import ULID

from app.core.errors import Conflict
from app.graphql.execution.compiled import CompiledExecutor
from app.graphql.execution.replay import ReplayExecutor, Tape
from app.graphql.schema import build_schema
from app.ratelimit.service import RateLimiter
from app.web.view import DirectLane, GraphQLView
from tests.conftest import GraphQLClient, LiveServer, Org, make_org
from tests.documents import LOG_ERROR

# What differs between two events or two requests by nature.
VARYING_KEYS = frozenset({"id", "errorId", "timestamp", "receivedAt", "position", "requestId"})
VARYING_HEADERS = frozenset({"x-request-id", "x-ratelimit-remaining", "x-ratelimit-reset", "date"})
COUNT = "query Count($o: ID!) { orgErrors(orgId: $o) { totalCount } }"


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<varies>" if k in VARYING_KEYS else _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def shape(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = [(k, v) for k, v in response.headers.items() if k not in VARYING_HEADERS]
    if "content-length" in response.headers:  # ids and positions may differ in length: compare the rest
        headers = [(k, v) for k, v in headers if k != "content-length"]
    return response.status_code, headers, _normal(response.json())


class Lane:
    def __init__(self, view: GraphQLView, gql: GraphQLClient) -> None:
        self.view = view
        self.gql = gql

    async def both(
        self,
        query: str,
        variables: dict[str, Any] | None,
        *,
        key: str | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, httpx.Response]:
        """The answer with the lane off (the full path, which also validates the document), then with
        the lane on."""
        self.view.direct_lane = False
        try:
            off = await self.gql.post(query, variables, key=key, headers=headers)
        finally:
            self.view.direct_lane = True
        on = await self.gql.post(query, variables, key=key, headers=headers)
        return off, on


@pytest.fixture
def lane(server: LiveServer, gql: GraphQLClient) -> Iterator[Lane]:
    view = server.app.state.graphql_view
    assert view.direct_lane  # on in the test server: the tests turn it off for one request at a time
    yield Lane(view, gql)
    view.direct_lane = True


async def stored(gql: GraphQLClient, org: Org) -> int:
    data = await gql.data(COUNT, {"o": org.id}, key=org.key)
    total: int = data["orgErrors"]["totalCount"]
    return total


def unique(document: str) -> str:
    """A document the server has not seen yet (its first request validates it on the full path)."""
    return f"{document}\n# {ULID()}"


def log_vars(org: Org, message: str = "lane", **error: Any) -> dict[str, Any]:
    return {"orgId": org.id, "error": {"message": message, "severity": "HIGH", **error}}


@pytest.mark.parametrize("graphql_response", [False, True])
async def test_logError_is_answered_by_the_lane_as_by_the_full_path(
    lane: Lane, gql: GraphQLClient, org: Org, graphql_response: bool
) -> None:
    headers = {"Accept": "application/graphql-response+json"} if graphql_response else None
    document = unique(LOG_ERROR)
    answered, recorded = DirectLane.answered, Tape.recorded
    off, on = await lane.both(document, log_vars(org), key=org.key, headers=headers)
    assert (DirectLane.answered, Tape.recorded) == (answered + 1, recorded + 1)
    assert shape(on) == shape(off)
    assert on.status_code == 200 and "errors" not in on.json()
    assert on.json()["data"]["logError"]["errorId"] != off.json()["data"]["logError"]["errorId"]
    assert int(on.headers["x-ratelimit-remaining"]) == int(off.headers["x-ratelimit-remaining"]) - 1
    assert await stored(gql, org) == 2


async def test_the_idempotency_key_is_honoured_on_the_lane(lane: Lane, gql: GraphQLClient, org: Org) -> None:
    """The same key on both paths: the lane's answer is the replayed first event, nothing stored twice."""
    document = unique(LOG_ERROR)
    headers = {"X-Idempotency-Key": f"lane-{ULID()}"}
    answered = DirectLane.answered
    off, on = await lane.both(document, log_vars(org), key=org.key, headers=headers)
    assert DirectLane.answered == answered + 1
    first, again = off.json()["data"]["logError"], on.json()["data"]["logError"]
    assert (first["replayed"], again["replayed"], again["errorId"]) == (False, True, first["errorId"])
    assert await stored(gql, org) == 1


TWO_FIELDS = """mutation Two($o: ID!, $a: LogErrorInput!, $b: LogErrorInput!) {
  a: logError(orgId: $o, error: $a) { errorId error { message } }
  b: logError(orgId: $o, error: $b) { errorId error { message } }
}"""
GOOD = {"message": "good", "severity": "LOW"}
BAD = {"message": "", "severity": "LOW"}  # refused by the input's validation, in the resolver


@dataclass
class Case:
    query: str
    variables: Callable[[Org, Org], dict[str, Any]]
    key: Callable[[Org, Org], str | None]
    stored_per_request: int
    taped: int  # root fields the lane ran (and the full path replays)
    code: str


CASES = {
    "invalid input": Case(
        LOG_ERROR, lambda org, _: log_vars(org, ""), lambda org, _: org.key, 0, 1, "VALIDATION_ERROR"
    ),
    "another organization": Case(
        LOG_ERROR, lambda org, other: log_vars(other), lambda org, _: org.key, 0, 1, "NOT_FOUND"
    ),
    # Read as a float by the lane's JSON parser, exactly by the full path's: the lane hands it over unrun.
    "an integer past 64 bits": Case(
        LOG_ERROR,
        lambda org, _: log_vars(org, context={"huge": 2**70}),
        lambda org, _: org.key,
        0,
        0,
        "VALIDATION_ERROR",
    ),
    # Both non-null: the second's failure nulls the whole answer, after the first stored its event.
    "the second of two fails": Case(
        TWO_FIELDS, lambda org, _: {"o": org.id, "a": GOOD, "b": BAD}, lambda org, _: org.key, 1, 2, ""
    ),
    # The first's failure ends the operation: the second field never runs, on either path.
    "the first of two fails": Case(
        TWO_FIELDS, lambda org, _: {"o": org.id, "a": BAD, "b": GOOD}, lambda org, _: org.key, 0, 1, ""
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_failing_mutation_is_replayed_by_the_full_path(
    lane: Lane, gql: GraphQLClient, server: LiveServer, org: Org, name: str
) -> None:
    case = CASES[name]
    other = make_org(server)
    document = unique(case.query)
    answered, replayed = DirectLane.answered, Tape.replayed
    off, on = await lane.both(document, case.variables(org, other), key=case.key(org, other))
    assert (DirectLane.answered, Tape.replayed) == (answered, replayed + case.taped)
    assert shape(on) == shape(off)
    errors = on.json()["errors"]
    assert errors and on.json()["data"] is None
    if case.code:
        assert errors[0]["extensions"]["code"] == case.code
    assert await stored(gql, org) == 2 * case.stored_per_request


async def test_a_bad_credential_or_a_spent_budget_is_refused_the_same(
    lane: Lane, gql: GraphQLClient, server: LiveServer, org: Org
) -> None:
    """Refused before execution, on the lane as on the full path: nothing to tape, nothing stored."""
    document = unique(LOG_ERROR)
    for key in ("not-a-key", None):
        off, on = await lane.both(document, log_vars(org), key=key)
        assert shape(on) == shape(off) and on.status_code == 401

    original = server.services.rate_limiter
    server.services.rate_limiter = RateLimiter(reads=100, writes=1, window_seconds=3600)
    try:
        assert (await gql.post(document, log_vars(org), key=org.key)).status_code == 200
        off, on = await lane.both(document, log_vars(org), key=org.key)
    finally:
        server.services.rate_limiter = original
    assert shape(on) == shape(off) and on.status_code == 429
    assert on.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert await stored(gql, org) == 1


async def test_an_idempotency_conflict_is_reported_once_and_stores_nothing(
    lane: Lane, gql: GraphQLClient, org: Org
) -> None:
    key = f"conflict-{ULID()}"
    document = unique(LOG_ERROR)
    first = await gql.post(document, {**log_vars(org, "first"), "key": key}, key=org.key)
    assert "errors" not in first.json()
    replayed = Tape.replayed
    off, on = await lane.both(document, {**log_vars(org, "second"), "key": key}, key=org.key)
    assert Tape.replayed == replayed + 1
    assert shape(on) == shape(off)
    assert on.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert await stored(gql, org) == 1


async def test_an_unexpected_exception_runs_once_and_is_logged_once(
    lane: Lane,
    gql: GraphQLClient,
    server: LiveServer,
    org: Org,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    async def explode(*_: object) -> None:
        calls.append("log")
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(server.services.events, "log", explode)
    caplog.set_level(logging.INFO)
    document = unique(LOG_ERROR)
    off, on = await lane.both(document, log_vars(org), key=org.key)
    assert calls == ["log", "log"]  # once per request: the full path replayed the lane's exception
    assert shape(on) == shape(off) and "hunter2" not in on.text
    assert on.json()["errors"][0]["extensions"]["code"] == "INTERNAL_ERROR"
    for response in (off, on):
        request_id = response.headers["x-request-id"]
        logged = [
            r
            for r in caplog.records
            if r.levelno == logging.ERROR and getattr(r, "request_id", "") == request_id
        ]
        assert len(logged) == 1 and logged[0].exc_info and "hunter2" in str(logged[0].exc_info[1])


async def test_a_key_revoked_while_its_mutation_runs_gets_the_mutation_s_own_answer(
    lane: Lane, gql: GraphQLClient, server: LiveServer, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full path replays for the caller the lane ran the mutation for: a key revoked meanwhile
    does not turn the mutation's own answer into a 401 (the mutation happened)."""
    original = server.services.events.log
    calls: list[str] = []

    async def revoke_then_conflict(*args: Any, **kwargs: Any) -> Any:
        calls.append("log")
        await server.services.auth.revoke(org.key)
        raise Conflict("Taken meanwhile")

    document = unique(LOG_ERROR)
    assert "errors" not in (await gql.post(document, log_vars(org), key=org.key)).json()  # now seen
    monkeypatch.setattr(server.services.events, "log", revoke_then_conflict)
    replayed = Tape.replayed
    response = await gql.post(document, log_vars(org), key=org.key)
    monkeypatch.setattr(server.services.events, "log", original)
    assert calls == ["log"] and Tape.replayed == replayed + 1
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
    after = await gql.post(unique(LOG_ERROR), log_vars(org), key=org.key)
    assert after.status_code == 401  # revoked for every request that follows


class RequestLines(logging.Handler):
    """The request log lines (logger app.request) by request id. The middleware writes a line after the
    response is sent, so a test waits for it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: dict[str, list[logging.LogRecord]] = {}
        self.arrived = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.arrived:
            self.lines.setdefault(getattr(record, "request_id", ""), []).append(record)
            self.arrived.notify_all()

    async def of(self, request_id: str) -> list[logging.LogRecord]:
        def wait() -> list[logging.LogRecord]:
            with self.arrived:
                self.arrived.wait_for(lambda: request_id in self.lines, timeout=10)
                return list(self.lines.get(request_id, []))

        return await asyncio.to_thread(wait)


@pytest.fixture
def request_lines() -> Iterator[RequestLines]:
    logger = logging.getLogger("app.request")
    handler, level = RequestLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_the_log_line_says_mutation_on_both_paths(
    lane: Lane, gql: GraphQLClient, org: Org, request_lines: RequestLines
) -> None:
    document = unique(LOG_ERROR)
    answered = DirectLane.answered
    responses = [
        *(await lane.both(document, log_vars(org), key=org.key)),  # full path, then the lane
        await gql.post(document, log_vars(org, ""), key=org.key),  # the lane, handed over
    ]
    assert DirectLane.answered == answered + 1
    for response, outcome in zip(responses, ["OK", "OK", "VALIDATION_ERROR"], strict=True):
        lines = await request_lines.of(response.headers["x-request-id"])
        assert len(lines) == 1
        fields = tuple(getattr(lines[0], name) for name in ("operation", "operation_type", "outcome"))
        assert fields == ("Log", "mutation", outcome)


async def test_a_mutation_by_GET_never_reaches_the_lane(gql: GraphQLClient, org: Org) -> None:
    document = unique(LOG_ERROR)
    assert "errors" not in (await gql.post(document, log_vars(org), key=org.key)).json()  # now validated
    answered, recorded = DirectLane.answered, Tape.recorded
    params = {"query": document, "variables": json.dumps(log_vars(org))}
    refused = await gql.http.get("/graphql", params=params, headers={"X-API-KEY": org.key})
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"
    assert (DirectLane.answered, Tape.recorded) == (answered, recorded)
    assert await stored(gql, org) == 1


def test_the_production_executor_tapes() -> None:
    """The lane takes mutations only with an executor that tapes (else a hand-over would run them twice)."""
    assert issubclass(build_schema().execution_context_class, ReplayExecutor)


# Units: the executor with a tape, on a small schema.


class Stop(BaseException):
    """Like a shutdown: not an Exception."""


@strawberry.type
class Bumped:
    count: int
    note: str


@dataclass
class Seen:
    calls: list[str]
    started: asyncio.Event


SEEN = Seen([], asyncio.Event())


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def bump(self, how: str) -> Bumped:
        SEEN.calls.append(how)
        if how == "fail":
            raise ValueError("no")
        if how == "stop":
            raise Stop
        if how == "wait":
            SEEN.started.set()
            await asyncio.Event().wait()
        return Bumped(count=len(SEEN.calls), note=how)

    @strawberry.mutation
    def sync_bump(self) -> int:
        SEEN.calls.append("sync")
        return len(SEEN.calls)


class Resolves(SchemaExtension):
    """Resolver middleware: sees every field it wraps."""

    seen: list[str] = []

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        Resolves.seen.append(info.field_name)
        return _next(root, info, *args, **kwargs)


@dataclass
class Context:
    tape: Tape | None


def small_schema(*extensions: Any) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query, mutation=Mutation, execution_context_class=CompiledExecutor, extensions=list(extensions)
    )


@pytest.fixture(autouse=False)
def seen() -> Seen:
    SEEN.calls.clear()
    SEEN.started = asyncio.Event()
    return SEEN


TWO = 'mutation { a: bump(how: "one") { count note } s: syncBump b: bump(how: "fail") { count } }'


async def test_a_tape_records_then_replays_each_outcome_once(seen: Seen) -> None:
    schema = small_schema()
    tape = Tape()
    compiled = CompiledExecutor.compiled
    recorded = await schema.execute(TWO, context_value=Context(tape))
    assert seen.calls == ["one", "sync", "fail"] and len(tape) == 3
    assert CompiledExecutor.compiled > compiled  # the tape leaves the compiled plans open
    replayed = await schema.execute(TWO, context_value=Context(tape.for_replay()))
    assert seen.calls == ["one", "sync", "fail"] and len(tape) == 0  # no resolver ran again
    assert [e.formatted for e in replayed.errors or []] == [e.formatted for e in recorded.errors or []]
    assert replayed.data == recorded.data
    again = await schema.execute(TWO, context_value=Context(tape))  # the tape is used up: they run
    assert seen.calls == ["one", "sync", "fail"] * 2 and again.errors


async def test_a_replay_tape_runs_root_fields_it_does_not_hold(seen: Seen) -> None:
    schema = small_schema()
    tape = Tape()
    await schema.execute('mutation { a: bump(how: "one") { count } }', context_value=Context(tape))
    result = await schema.execute(
        'mutation { a: bump(how: "one") { count } b: bump(how: "two") { count } }',
        context_value=Context(tape.for_replay()),
    )
    assert seen.calls == ["one", "two"]
    assert result.data == {"a": {"count": 1}, "b": {"count": 2}}


async def test_resolver_middleware_still_sees_taped_and_replayed_fields(seen: Seen) -> None:
    Resolves.seen = []
    schema = small_schema(Resolves)
    tape = Tape()
    query = 'mutation { a: bump(how: "one") { count } }'
    assert (await schema.execute(query, context_value=Context(tape))).errors is None
    assert (await schema.execute(query, context_value=Context(tape.for_replay()))).errors is None
    assert seen.calls == ["one"] and Resolves.seen == ["bump", "count", "bump", "count"]


async def test_a_base_exception_is_not_taped(seen: Seen) -> None:
    tape = Tape()
    with pytest.raises(Stop):
        await small_schema().execute('mutation { bump(how: "stop") { count } }', context_value=Context(tape))
    assert seen.calls == ["stop"] and len(tape) == 0


async def test_a_cancelled_resolver_is_not_taped(seen: Seen) -> None:
    tape = Tape()
    task = asyncio.create_task(
        small_schema().execute('mutation { bump(how: "wait") { count } }', context_value=Context(tape))
    )
    await seen.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(tape) == 0


async def test_queries_and_untaped_contexts_are_left_alone(seen: Seen) -> None:
    schema = small_schema()
    tape = Tape()
    assert (await schema.execute("{ ok }", context_value=Context(tape))).data == {"ok": True}
    assert (await schema.execute("mutation { syncBump }", context_value=Context(None))).data == {
        "syncBump": 1
    }
    assert len(tape) == 0
