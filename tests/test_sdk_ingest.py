"""The ingestion protocol by hand: authentication forms, compression, hostile envelopes, throttling,
exactly-once by event id, statistics by release and tag."""

from __future__ import annotations

import gzip
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import brotli
import httpx
import orjson
import pytest
import zstandard

from app.ratelimit.service import RateLimiter
from tests.conftest import GraphQLClient, LiveServer, Org, make_org
from tests.sdk_support import Project, make_project, sdk_events


def event(message: str = "boom", **fields: object) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "level": "error",
        "platform": "python",
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": message,
                    "mechanism": {"type": "generic", "handled": True},
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "app.py",
                                "function": "main",
                                "module": "app",
                                "lineno": 3,
                                "in_app": True,
                            }
                        ]
                    },
                }
            ]
        },
        **fields,
    }


def envelope(*items: tuple[dict[str, object], bytes], header: dict[str, object] | None = None) -> bytes:
    lines = [orjson.dumps(header or {})]
    for item_header, payload in items:
        lines += [orjson.dumps(item_header), payload]
    return b"\n".join(lines) + b"\n"


def event_item(body: dict[str, object], with_length: bool = True) -> tuple[dict[str, object], bytes]:
    payload = orjson.dumps(body)
    return ({"type": "event", "length": len(payload)} if with_length else {"type": "event"}), payload


def auth(project: Project) -> dict[str, str]:
    return {
        "X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={project.public_key}, sentry_client=test/1.0"
    }


@pytest.fixture
def project(server: LiveServer, org: Org) -> Project:
    return make_project(server, org)


async def test_envelope_store_and_every_auth_form(
    http: httpx.AsyncClient, gql: GraphQLClient, project: Project
) -> None:
    first = event("by header")
    response = await http.post(
        f"/api/{project.id}/envelope/", content=envelope(event_item(first)), headers=auth(project)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"id": first["event_id"]}
    limits = response.headers["X-Sentry-Rate-Limits"]
    assert "transaction" in limits and "session" in limits and ":error" not in limits

    second = event("by query string, no length")
    response = await http.post(
        f"/api/{project.id}/envelope/?sentry_key={project.public_key}&sentry_version=7",
        content=envelope(event_item(second, with_length=False)),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example"},
    )
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"

    third = event("by envelope dsn")
    body = envelope(event_item(third), header={"dsn": project.dsn, "event_id": third["event_id"]})
    assert (await http.post(f"/api/{project.id}/envelope/", content=body)).status_code == 200

    fourth = event("store endpoint")
    response = await http.post(
        f"/api/{project.id}/store/", content=orjson.dumps(fourth), headers=auth(project)
    )
    assert response.json() == {"id": fourth["event_id"]}

    page = await sdk_events(gql, project)
    assert [e["message"] for e in page["nodes"]] == [
        f"RuntimeError: {m}"
        for m in ("by header", "by query string, no length", "by envelope dsn", "store endpoint")
    ]


async def test_preflight_for_browser_sdks(http: httpx.AsyncClient, project: Project) -> None:
    response = await http.options(
        f"/api/{project.id}/envelope/",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Origin"] == "*" and response.content == b""


async def test_other_methods_are_refused_with_the_allowed_ones(
    http: httpx.AsyncClient, project: Project
) -> None:
    response = await http.get(f"/api/{project.id}/envelope/")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST, OPTIONS"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["X-Request-ID"].startswith("req_") and response.content == b""


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_compressed_envelopes(
    http: httpx.AsyncClient, gql: GraphQLClient, project: Project, encoding: str
) -> None:
    body = envelope(event_item(event(f"compressed {encoding}")))
    compress = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[encoding]
    response = await http.post(
        f"/api/{project.id}/envelope/",
        content=compress(body),
        headers={**auth(project), "Content-Encoding": encoding},
    )
    assert response.status_code == 200, response.text
    assert (await sdk_events(gql, project))["nodes"][0]["message"] == f"RuntimeError: compressed {encoding}"


async def test_credentials_are_checked(http: httpx.AsyncClient, server: LiveServer, project: Project) -> None:
    body = envelope(event_item(event()))
    url = f"/api/{project.id}/envelope/"
    assert (await http.post(url, content=body)).status_code == 403  # none sent
    unknown = {"X-Sentry-Auth": f"Sentry sentry_key={'0' * 32}"}
    assert (await http.post(url, content=body, headers=unknown)).status_code == 401
    other = make_project(server, make_org(server), "other")
    wrong = await http.post(url, content=body, headers=auth(other))
    assert wrong.status_code == 403 and "not for this project" in wrong.json()["detail"]
    conflicting = await http.post(f"{url}?sentry_key={other.public_key}", content=body, headers=auth(project))
    assert conflicting.status_code == 400
    assert (
        await http.post("/api/99999999/envelope/", content=body, headers=auth(project))
    ).status_code == 403
    # An org API key is not a DSN key, and a DSN key reads nothing.
    org_key = {"X-Sentry-Auth": f"Sentry sentry_key={project.org.key}"}
    assert (await http.post(url, content=body, headers=org_key)).status_code == 401
    read = await http.post(
        "/graphql",
        json={
            "query": "query($o: ID!) { orgErrors(orgId: $o) { totalCount } }",
            "variables": {"o": project.org.id},
        },
        headers={"X-API-KEY": project.public_key},
    )
    assert read.status_code == 401


def _bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        ("truncated", b'{}\n{"type":"event","length":500}\n{"message":"cut', {}, 400),
        ("lying length", b'{}\n{"type":"event","length":5}\n{"message":"longer than five"}\n', {}, 400),
        ("invalid json", b'{}\n{"type":"event"}\n{"message": nope}\n', {}, 400),
        ("invalid header", b"not json\n", {}, 400),
        ("item without type", b'{}\n{"length":2}\n{}\n', {}, 400),
        ("10 MB item", b'{}\n{"type":"event"}\n{"message":"' + b"x" * 10_000_000 + b'"}\n', {}, 413),
        ("bomb", _bomb(64 << 20), {"Content-Encoding": "gzip"}, 413),
        ("bad gzip", b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}, 400),
        ("unknown encoding", b"{}", {"Content-Encoding": "lzma"}, 400),
    ],
)
async def test_hostile_envelopes_get_clear_answers_and_store_nothing(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    project: Project,
    name: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    if body.startswith(b"{}\n"):
        # A valid event item goes first: the envelope is refused whole, the good item is not stored either.
        body = envelope(event_item(event("the good item comes first"))) + body.removeprefix(b"{}\n")
    response = await http.post(
        f"/api/{project.id}/envelope/", content=body, headers={**auth(project), **headers}
    )
    assert response.status_code == status, (name, response.text)
    assert response.json()["detail"]
    assert (await sdk_events(gql, project))["totalCount"] == 0


async def test_unstored_items_are_skipped_and_counted(
    http: httpx.AsyncClient, gql: GraphQLClient, server: LiveServer, project: Project
) -> None:
    body = envelope(
        ({"type": "session"}, b'{"sid":"x","status":"ok"}'),
        ({"type": "transaction", "length": 2}, b"{}"),
        ({"type": "attachment", "length": 4, "filename": "a.bin"}, b"\0\n\0\n"),
        ({"type": "something_new"}, b"whatever"),
        header={"sent_at": datetime.now(UTC).isoformat()},
    )
    response = await http.post(f"/api/{project.id}/envelope/", content=body, headers=auth(project))
    assert response.status_code == 200 and response.json() == {"id": None}
    assert (await sdk_events(gql, project))["totalCount"] == 0
    counts = server.services.ingest.counters.counts
    assert counts[("dropped", "unsupported_item:session", str(project.id))] == 1
    assert counts[("dropped", "unsupported_item:other", str(project.id))] == 1
    metrics = (await http.get("/metrics")).text
    assert (
        "error_tracker_sdk_events_total"
        f'{{outcome="dropped",project="{project.id}",reason="unsupported_item:attachment"}} 1.0' in metrics
    )


async def test_a_resent_event_is_stored_and_counted_once(
    http: httpx.AsyncClient, gql: GraphQLClient, server: LiveServer, project: Project
) -> None:
    body = envelope(event_item(event("sent twice")))
    answers = [
        await http.post(f"/api/{project.id}/envelope/", content=body, headers=auth(project)) for _ in range(3)
    ]
    assert len({a.text for a in answers}) == 1 and answers[0].status_code == 200
    page = await sdk_events(gql, project)
    assert page["totalCount"] == 1
    groups = await gql.data(
        "query($o: ID!) { errorGroups(orgId: $o) { nodes { occurrences } } }",
        {"o": project.org.id},
        key=project.org.key,
    )
    assert groups["errorGroups"]["nodes"] == [{"occurrences": 1}]
    counts = server.services.ingest.counters.counts
    assert counts[("deduplicated", "event_id_seen", str(project.id))] == 2


async def test_spent_budget_answers_429_with_sentry_headers(
    http: httpx.AsyncClient, gql: GraphQLClient, server: LiveServer, project: Project
) -> None:
    now = [1_000_040.0]  # 20 s into a 60 s window
    ingest = server.services.ingest
    original = ingest.limiter
    ingest.limiter = RateLimiter(1, 2, 60, clock=lambda: now[0])
    try:
        url = f"/api/{project.id}/envelope/"
        for _ in range(2):
            assert (
                await http.post(url, content=envelope(event_item(event())), headers=auth(project))
            ).status_code == 200
        refused = await http.post(url, content=envelope(event_item(event("over"))), headers=auth(project))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "40"
        assert refused.headers["X-Sentry-Rate-Limits"] == "40:error;default;security:key"
        now[0] += 40
        assert (
            await http.post(url, content=envelope(event_item(event("later"))), headers=auth(project))
        ).status_code == 200
    finally:
        ingest.limiter = original
    assert (await sdk_events(gql, project))["totalCount"] == 3
    assert ingest.counters.counts[("rate_limited", "key_budget", str(project.id))] == 1


async def test_fingerprint_arrays_and_default(
    http: httpx.AsyncClient, gql: GraphQLClient, project: Project
) -> None:
    url = f"/api/{project.id}/envelope/"
    sent = [
        event("a", fingerprint=["{{ default }}", "tenant-1"]),
        event("b", fingerprint=["{{ default }}", "tenant-1"]),
        event("c", fingerprint=["{{ default }}", "tenant-2"]),
        event("d", fingerprint=["payments"]),
        event("e"),
    ]
    for body in sent:
        assert (
            await http.post(url, content=envelope(event_item(body)), headers=auth(project))
        ).status_code == 200
    prints = [e["fingerprint"] for e in (await sdk_events(gql, project))["nodes"]]
    assert prints[0] == prints[1] and len(set(prints)) == 4


async def test_stats_by_release_environment_and_tag(
    http: httpx.AsyncClient, gql: GraphQLClient, project: Project
) -> None:
    url = f"/api/{project.id}/envelope/"
    for release, env, tier in [("1.0", "prod", "gold"), ("1.0", "prod", "free"), ("2.0", "stage", "gold")]:
        body = event(release=release, environment=env, tags={"tier": tier, "a.b": "dotted"})
        assert (
            await http.post(url, content=envelope(event_item(body)), headers=auth(project))
        ).status_code == 200
    start = datetime.now(UTC) - timedelta(hours=1)
    query = """query($o: ID!, $f: DateTime!, $t: DateTime!, $g: StatsGroupBy, $k: String) {
      errorStats(orgId: $o, from: $f, to: $t, interval: DAY, groupBy: $g, tagKey: $k) { total keys } }"""
    variables = {"o": project.org.id, "f": start.isoformat(), "t": (start + timedelta(hours=2)).isoformat()}

    async def keys(group_by: str, tag_key: str | None = None) -> list[str]:
        data = await gql.data(query, {**variables, "g": group_by, "k": tag_key}, key=project.org.key)
        return data["errorStats"]["keys"]

    assert await keys("RELEASE") == ["1.0", "2.0"]
    assert await keys("ENVIRONMENT") == ["prod", "stage"]
    assert await keys("TAG", "tier") == ["gold", "free"]
    assert await keys("TAG", "a.b") == ["dotted"]
    problem = await gql.error(query, {**variables, "g": "TAG"}, key=project.org.key)
    assert problem["extensions"]["code"] == "INVALID_REQUEST"


async def test_log_error_takes_environment_release_and_tags(gql: GraphQLClient, org: Org) -> None:
    from tests.helpers import log_error

    await log_error(
        gql, org.id, org.key, environment="prod", release="9.1", tags=[{"key": "tier", "value": "gold"}]
    )
    found = await gql.data(
        "query($o: ID!, $f: ErrorFilter) { orgErrors(orgId: $o, filter: $f) "
        "{ nodes { environment release tags { key value } } } }",
        {"o": org.id, "f": {"tag": {"key": "tier", "value": "gold"}, "environment": "prod"}},
        key=org.key,
    )
    assert found["orgErrors"]["nodes"] == [
        {"environment": "prod", "release": "9.1", "tags": [{"key": "tier", "value": "gold"}]}
    ]
    bad = await gql.error(
        "mutation($o: ID!, $e: LogErrorInput!) { logError(orgId: $o, error: $e) { errorId } }",
        {
            "o": org.id,
            "e": {
                "message": "m",
                "severity": "LOW",
                "tags": [{"key": "bad key", "value": ""}],
                "environment": "a\nb",
            },
        },
        key=org.key,
    )
    assert bad["extensions"]["code"] == "VALIDATION_ERROR"
    assert len(bad["extensions"]["details"]) == 3


async def test_org_keys_list_projects_and_dsns(
    server: LiveServer, gql: GraphQLClient, org: Org, project: Project
) -> None:
    query = "query($o: ID!) { projects(orgId: $o) { id name keys { publicKey dsn } } }"
    data = await gql.data(query, {"o": org.id}, key=org.key)
    assert data["projects"] == [
        {"id": project.id, "name": "backend", "keys": [{"publicKey": project.public_key, "dsn": project.dsn}]}
    ]
    assert project.dsn == f"http://{project.public_key}@127.0.0.1:{server.settings.port}/{project.id}"
    other = make_org(server)
    refused = await gql.error(query, {"o": org.id}, key=other.key)
    assert refused["extensions"]["code"] == "NOT_FOUND"


async def test_rest_logs_and_lists_environment_release_and_tags(http: httpx.AsyncClient, org: Org) -> None:
    body = {"message": "rest", "severity": "low", "environment": "prod", "release": "3.0"}
    body["tags"] = [{"key": "tier", "value": "gold"}]
    created = await http.post(f"/orgs/{org.id}/errors", json=body, headers={"X-API-KEY": org.key})
    assert created.status_code == 201, created.text
    listed = (await http.get(f"/orgs/{org.id}/errors", headers={"X-API-KEY": org.key})).json()["errors"]
    assert [(e["environment"], e["release"], e["tags"]) for e in listed] == [
        ("prod", "3.0", {"tier": "gold"})
    ]


async def test_events_older_than_retention_are_dropped_and_counted(
    http: httpx.AsyncClient, gql: GraphQLClient, server: LiveServer, project: Project
) -> None:
    events = server.services.events
    original, events.retention_days = events.retention_days, 1
    try:
        old = event(
            "from an old offline cache", timestamp=(datetime.now(UTC) - timedelta(days=2)).timestamp()
        )
        fresh = event("fresh")
        body = envelope(event_item(old), event_item(fresh))
        response = await http.post(f"/api/{project.id}/envelope/", content=body, headers=auth(project))
    finally:
        events.retention_days = original
    assert response.status_code == 200
    assert [e["message"] for e in (await sdk_events(gql, project))["nodes"]] == ["RuntimeError: fresh"]
    assert server.services.ingest.counters.counts[("dropped", "too_old", str(project.id))] == 1
