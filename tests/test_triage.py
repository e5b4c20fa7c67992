"""Triage through the public API: status changes by people and by events (regressions by release, ignore
conditions), activity with actors, filters, comments, merges, and the errorGroupChanged subscription."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from app.core.principal import Principal
from app.events.store import EventStore
from app.graphql.context import Services
from app.groups.service import ACTIVITY_TOPIC
from app.groups.store import AliasStore, GroupStore
from tests.conftest import GraphQLClient, LiveServer, Org, server_process
from tests.test_subscriptions import TIMEOUT, receive, session, subscribe

GROUP_FIELDS = (
    "fingerprint occurrences status substatus assignee lastRelease "
    "resolution { kind release } ignore { kind count windowMinutes until }"
)
ACTIVITY_FIELDS = (
    "position fingerprint kind cause actor { name prefix } status substatus assignee text release"
)
LOG = """mutation($o: ID!, $e: LogErrorInput!) { logError(orgId: $o, error: $e) { error { fingerprint } } }"""
UPDATE = f"""mutation($o: ID!, $f: String!, $i: UpdateErrorGroupInput!) {{
  updateErrorGroup(orgId: $o, fingerprint: $f, input: $i) {{ {GROUP_FIELDS} }} }}"""
GROUP = f"""query($o: ID!, $f: String!, $first: Int, $after: String) {{
  errorGroup(orgId: $o, fingerprint: $f) {{ {GROUP_FIELDS}
    activity(first: $first, after: $after) {{
      nodes {{ {ACTIVITY_FIELDS} }} pageInfo {{ hasNextPage }} }} }} }}"""
GROUPS = """query($o: ID!, $filter: ErrorGroupFilter) {
  errorGroups(orgId: $o, filter: $filter) { totalCount nodes { fingerprint status substatus assignee } } }"""
COMMENT = f"""mutation($o: ID!, $f: String!, $t: String!) {{
  commentOnErrorGroup(orgId: $o, fingerprint: $f, text: $t) {{ {ACTIVITY_FIELDS} }} }}"""
MERGE = """mutation($o: ID!, $s: String!, $t: String!) {
  mergeErrorGroups(orgId: $o, source: $s, target: $t) { fingerprint occurrences } }"""
UNMERGE = (
    """mutation($o: ID!, $f: String!) { unmergeErrorGroup(orgId: $o, fingerprint: $f) { fingerprint } }"""
)
CHANGED = f"""subscription($o: ID!, $after: String) {{
  errorGroupChanged(orgId: $o, after: $after) {{ {ACTIVITY_FIELDS} }} }}"""


async def log(gql: GraphQLClient, org: Org, message: str = "Payment failed", **fields: Any) -> str:
    error = {"message": message, "severity": "HIGH", **fields}
    data = await gql.data(LOG, {"o": org.id, "e": error}, key=org.key)
    return data["logError"]["error"]["fingerprint"]


async def update(gql: GraphQLClient, org: Org, fingerprint: str, **change: Any) -> dict[str, Any]:
    data = await gql.data(UPDATE, {"o": org.id, "f": fingerprint, "i": change}, key=org.key)
    return data["updateErrorGroup"]


async def group(gql: GraphQLClient, org: Org, fingerprint: str, **variables: Any) -> dict[str, Any]:
    data = await gql.data(GROUP, {"o": org.id, "f": fingerprint, **variables}, key=org.key)
    return data["errorGroup"]


def named_key(server: LiveServer, org: Org, name: str) -> str:
    async def create(services: Services) -> str:
        return (await services.auth.create_key(org_id=org.id, name=name)).plaintext

    return server.call(create)


async def test_resolved_in_a_release_regresses_only_on_that_release_or_newer(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    fp = await log(gql, org, release="1.4.1", environment="production")
    key = named_key(server, org, "Ada on call")
    data = await gql.data(
        UPDATE,
        {
            "o": org.id,
            "f": fp,
            "i": {"status": "RESOLVED", "resolution": {"kind": "IN_RELEASE", "release": "1.4.2"}},
        },
        key=key,
    )
    assert data["updateErrorGroup"]["status"] == "RESOLVED"
    assert data["updateErrorGroup"]["resolution"] == {"kind": "IN_RELEASE", "release": "1.4.2"}

    await log(gql, org, release="1.4.1")  # an old client still running the broken version
    await log(gql, org, release="1.4.2-rc.1")
    assert (await group(gql, org, fp))["status"] == "RESOLVED"

    await log(gql, org, release="1.4.10")  # newer (as a version, not as text)
    found = await group(gql, org, fp)
    assert (found["status"], found["substatus"], found["resolution"]) == ("UNRESOLVED", "REGRESSED", None)
    assert found["occurrences"] == 4 and found["lastRelease"] == "1.4.10"

    entries = found["activity"]["nodes"]  # newest first
    assert [(e["kind"], e["cause"]) for e in entries] == [
        ("STATUS_CHANGED", "REGRESSION"),
        ("STATUS_CHANGED", "PERSON"),
        ("FIRST_SEEN", "FIRST_EVENT"),
    ]
    assert entries[0]["actor"] is None and entries[0]["release"] == "1.4.10"
    prefix = key.split("_")[0] + "_" + key.split("_")[1]
    assert entries[1]["actor"] == {"name": "Ada on call", "prefix": prefix}


async def test_resolved_in_the_next_release_with_releases_that_are_not_versions(
    gql: GraphQLClient, org: Org
) -> None:
    fp = await log(gql, org, release="spring")
    await log(gql, org, message="Another problem", release="summer")
    await log(gql, org, release="summer")  # the newest release the group has seen
    await update(gql, org, fp, status="RESOLVED", resolution={"kind": "IN_NEXT_RELEASE"})
    await log(gql, org, release="spring")  # first seen before summer: older
    await log(gql, org, release="summer")
    assert (await group(gql, org, fp))["status"] == "RESOLVED"
    await log(gql, org, release="autumn")  # first seen after: newer
    assert (await group(gql, org, fp))["substatus"] == "REGRESSED"


async def test_concurrent_events_regress_a_group_once(gql: GraphQLClient, org: Org) -> None:
    fp = await log(gql, org)
    await update(gql, org, fp, status="RESOLVED")
    await asyncio.gather(*(log(gql, org, release=f"2.0.{i}") for i in range(8)))
    entries = (await group(gql, org, fp))["activity"]["nodes"]
    assert [e["cause"] for e in entries].count("REGRESSION") == 1


async def test_ignore_until_more_events_then_back_to_unresolved(gql: GraphQLClient, org: Org) -> None:
    fp = await log(gql, org)
    ignored = await update(gql, org, fp, status="IGNORED", ignore={"kind": "UNTIL_COUNT", "count": 3})
    assert ignored["ignore"] == {"kind": "UNTIL_COUNT", "count": 3, "windowMinutes": None, "until": None}
    await log(gql, org)
    await log(gql, org)
    assert (await group(gql, org, fp))["status"] == "IGNORED"
    await log(gql, org)
    found = await group(gql, org, fp)
    assert (found["status"], found["substatus"], found["ignore"]) == ("UNRESOLVED", "ONGOING", None)
    assert found["activity"]["nodes"][0]["cause"] == "IGNORE_ENDED"


async def test_ignore_until_a_rate_counts_events_within_the_window(gql: GraphQLClient, org: Org) -> None:
    fp = await log(gql, org)
    await update(
        gql, org, fp, status="IGNORED", ignore={"kind": "UNTIL_RATE", "count": 2, "windowMinutes": 60}
    )
    await log(gql, org)
    assert (await group(gql, org, fp))["status"] == "IGNORED"
    await log(gql, org)
    assert (await group(gql, org, fp))["status"] == "UNRESOLVED"


async def test_every_problem_of_an_update_is_reported_together(gql: GraphQLClient, org: Org) -> None:
    fp = await log(gql, org)
    error = await gql.error(
        UPDATE,
        {
            "o": org.id,
            "f": fp,
            "i": {
                "status": "IGNORED",
                "resolution": {"kind": "IN_RELEASE"},
                "ignore": {"kind": "UNTIL_RATE", "count": 0},
                "assignee": "x" * 129,
            },
        },
        key=org.key,
    )
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    fields = {d["field"] for d in error["extensions"]["details"]}
    assert fields == {
        "input.resolution",  # only with RESOLVED
        "input.resolution.release",  # IN_RELEASE needs it
        "input.ignore.count",
        "input.ignore.windowMinutes",  # UNTIL_RATE needs it
        "input.assignee",
    }
    missing = await gql.error(UPDATE, {"o": org.id, "f": "nope", "i": {"status": "RESOLVED"}}, key=org.key)
    assert missing["extensions"]["code"] == "NOT_FOUND"


async def test_filters_by_status_substatus_and_assignee(gql: GraphQLClient, org: Org) -> None:
    a = await log(gql, org, message="Alpha broke")
    b = await log(gql, org, message="Beta broke")
    c = await log(gql, org, message="Gamma broke")
    await update(gql, org, a, status="RESOLVED", assignee="ada@example.com")
    await update(gql, org, b, assignee="ada@example.com")
    await update(gql, org, b, assignee=None)
    await update(gql, org, c, assignee="grace")

    async def fingerprints(**flt: Any) -> tuple[int, set[str]]:
        data = await gql.data(GROUPS, {"o": org.id, "filter": flt}, key=org.key)
        page = data["errorGroups"]
        return page["totalCount"], {g["fingerprint"] for g in page["nodes"]}

    assert await fingerprints(statuses=["RESOLVED"]) == (1, {a})
    assert await fingerprints(statuses=["UNRESOLVED"]) == (2, {b, c})
    assert await fingerprints(substatuses=["NEW"], statuses=["UNRESOLVED", "IGNORED"]) == (2, {b, c})
    assert await fingerprints(assignee="ada@example.com") == (1, {a})
    assert await fingerprints(unassigned=True) == (1, {b})
    kinds = [e["kind"] for e in (await group(gql, org, b))["activity"]["nodes"]]
    assert kinds == ["ASSIGNED", "ASSIGNED", "FIRST_SEEN"]


async def test_comments_are_bounded_activity(gql: GraphQLClient, org: Org) -> None:
    fp = await log(gql, org)
    data = await gql.data(COMMENT, {"o": org.id, "f": fp, "t": "Looking into it"}, key=org.key)
    assert data["commentOnErrorGroup"]["kind"] == "COMMENTED"
    assert data["commentOnErrorGroup"]["text"] == "Looking into it"
    long = await gql.error(COMMENT, {"o": org.id, "f": fp, "t": "x" * 4001}, key=org.key)
    blank = await gql.error(COMMENT, {"o": org.id, "f": fp, "t": "   "}, key=org.key)
    assert long["extensions"]["details"][0]["field"] == "text"
    assert blank["extensions"]["details"][0]["field"] == "text"


async def test_activity_pages_newest_first(gql: GraphQLClient, org: Org) -> None:
    fp = await log(gql, org)
    for i in range(4):
        await gql.data(COMMENT, {"o": org.id, "f": fp, "t": f"note {i}"}, key=org.key)
    first = (await group(gql, org, fp, first=3))["activity"]
    assert [e["text"] for e in first["nodes"]] == ["note 3", "note 2", "note 1"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await group(gql, org, fp, first=3, after=first["nodes"][-1]["position"]))["activity"]
    assert [e["kind"] for e in rest["nodes"]] == ["COMMENTED", "FIRST_SEEN"]
    assert rest["pageInfo"]["hasNextPage"] is False


async def test_merge_moves_counts_and_unmerge_lets_later_events_go_their_own_way(
    gql: GraphQLClient, org: Org
) -> None:
    target = await log(gql, org, message="Timeout talking to bank")
    source = await log(gql, org, message="Bank did not answer")
    await log(gql, org, message="Bank did not answer")
    merged = await gql.data(MERGE, {"o": org.id, "s": source, "t": target}, key=org.key)
    assert merged["mergeErrorGroups"] == {"fingerprint": target, "occurrences": 3}
    assert await gql.data(GROUPS, {"o": org.id}, key=org.key) == {
        "errorGroups": {
            "totalCount": 1,
            "nodes": [{"fingerprint": target, "status": "UNRESOLVED", "substatus": "NEW", "assignee": None}],
        }
    }
    # Later events of the merged fingerprint count into the target.
    assert await log(gql, org, message="Bank did not answer") == target
    assert (await group(gql, org, target))["occurrences"] == 4

    await gql.data(UNMERGE, {"o": org.id, "f": source}, key=org.key)
    assert await log(gql, org, message="Bank did not answer") == source
    assert (await group(gql, org, source))["occurrences"] == 1
    assert (await group(gql, org, target))["occurrences"] == 4
    again = await gql.error(UNMERGE, {"o": org.id, "f": source}, key=org.key)
    assert again["extensions"]["code"] == "NOT_FOUND"
    itself = await gql.error(MERGE, {"o": org.id, "s": target, "t": target}, key=org.key)
    assert itself["extensions"]["code"] == "VALIDATION_ERROR"


async def test_an_event_counted_as_a_merge_takes_its_group_moves_to_the_target(
    gql: GraphQLClient, org: Org, server: LiveServer
) -> None:
    """The race a merge has with logging: an event whose alias lookup ran just before the merge set the
    alias is counted under the old fingerprint after the merge took that group. Its count must not be
    lost in a group nobody sees: it moves to the target."""
    target = await log(gql, org, message="Gateway refused")
    source = await log(gql, org, message="Gateway hung up")
    await gql.data(MERGE, {"o": org.id, "s": source, "t": target}, key=org.key)
    page = await gql.data(
        "query($o: ID!, $f: ErrorFilter) { orgErrors(orgId: $o, filter: $f) { nodes { id } } }",
        {"o": org.id, "f": {"fingerprint": source}},
        key=org.key,
    )
    (stored_id,) = [node["id"] for node in page["orgErrors"]["nodes"]]

    async def count_late(services: Services) -> bool:
        event = await services.events.get(Principal("test", org.id, False, None), org.id, stored_id)
        assert event is not None
        return await services.groups.record(event)  # as if its alias lookup had run before the merge

    assert server.call(count_late) is False  # no new group
    assert (await group(gql, org, target))["occurrences"] == 3
    gone = await gql.data(GROUPS, {"o": org.id}, key=org.key)
    assert [n["fingerprint"] for n in gone["errorGroups"]["nodes"]] == [target]


async def _listening(server: LiveServer, at_least: int) -> None:
    async def registered() -> None:
        while server.services.pubsub.subscriber_count(ACTIVITY_TOPIC) < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(registered(), TIMEOUT)


async def test_group_changes_stream_and_resume_without_gap_or_duplicate(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "live", CHANGED, {"o": org.id})
        await _listening(server, 1)
        fp = await log(gql, org)
        first = await receive(ws)
        seen = first["payload"]["data"]["errorGroupChanged"]
        assert (seen["kind"], seen["fingerprint"]) == ("FIRST_SEEN", fp)
    # Disconnected: changes happen meanwhile.
    await update(gql, org, fp, status="RESOLVED")
    await gql.data(COMMENT, {"o": org.id, "f": fp, "t": "shipped"}, key=org.key)
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "resume", CHANGED, {"o": org.id, "after": seen["position"]})
        replayed = [(await receive(ws))["payload"]["data"]["errorGroupChanged"] for _ in range(2)]
        assert [e["kind"] for e in replayed] == ["STATUS_CHANGED", "COMMENTED"]
        await log(gql, org, release="9.0.0")  # live: the regression
        live = (await receive(ws))["payload"]["data"]["errorGroupChanged"]
        assert (live["cause"], live["substatus"]) == ("REGRESSION", "REGRESSED")
        positions = [e["position"] for e in [*replayed, live]]
        assert len(set(positions)) == 3
        await ws.send(json.dumps({"id": "resume", "type": "complete"}))


async def test_another_organizations_changes_are_refused(server: LiveServer, org: Org) -> None:
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "x", CHANGED, {"o": "someone-else"})
        message = await receive(ws)
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_changes_made_by_another_server_process_are_streamed(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "live", CHANGED, {"o": org.id})
        await _listening(server, 1)
        with server_process(server) as other:
            async with httpx.AsyncClient(base_url=other.url, timeout=30) as http:
                fp = await log(GraphQLClient(http), org, message="Seen by the other process")
            entry = (await receive(ws))["payload"]["data"]["errorGroupChanged"]
            assert (entry["kind"], entry["fingerprint"]) == ("FIRST_SEEN", fp)


async def test_a_merge_made_by_another_instance_redirects_this_ones_events_at_once(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    """This process remembers that a fingerprint has no merge alias (so its events skip the lookup);
    a merge or an unmerge made by another instance must still apply to its very next event. The other
    instance's writes are made here with its own client, exactly as its GroupService makes them: the
    alias, then the merge generation, then the move of the counts."""
    target = await log(gql, org, message="Inventory service down")
    source = await log(gql, org, message="Inventory timed out")
    assert await log(gql, org, message="Inventory timed out") == source  # remembered here: no alias
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server.settings.mongodb_uri)
    try:
        db = client[server.settings.mongodb_db]
        aliases, events = AliasStore(db), EventStore(db)
        await aliases.point(org.id, source, target)
        await events.note_alias_change()
        await GroupStore(db).absorb(org.id, target, source)
        assert await log(gql, org, message="Inventory timed out") == target
        assert (await group(gql, org, target))["occurrences"] == 4
        await aliases.remove(org.id, source)
        await events.note_alias_change()
        assert await log(gql, org, message="Inventory timed out") == source
    finally:
        await client.close()
    assert (await group(gql, org, source))["occurrences"] == 1
    assert (await group(gql, org, target))["occurrences"] == 4
