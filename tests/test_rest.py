"""The REST compatibility routes, /metrics and retention, through the public HTTP API."""

from __future__ import annotations

import httpx
from pymongo import AsyncMongoClient

from app.events.store import EventStore
from tests.conftest import GraphQLClient, LiveServer, Org
from tests.helpers import ISO_MS_UTC, log_error


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["requestId"] == response.headers["x-request-id"]
    assert ISO_MS_UTC.match(error["timestamp"])
    assert isinstance(error["details"], list)
    return error


async def test_post_then_list(http: httpx.AsyncClient, org: Org) -> None:
    headers = {"X-API-KEY": org.key}
    created = await http.post(
        f"/orgs/{org.id}/errors",
        headers=headers,
        json={
            "message": "Upload failed",
            "severity": "high",
            "code": "FILE_UPLOAD_FAILED",
            "timestamp": "2026-11-01T10:00:00Z",
        },
    )
    assert created.status_code == 201
    body = created.json()
    assert body["message"] == "Error logged successfully" and body["error_id"].startswith("error-")

    for minute in range(1, 4):
        await http.post(
            f"/orgs/{org.id}/errors",
            headers=headers,
            json={
                "message": f"later {minute}",
                "severity": "LOW",
                "timestamp": f"2026-11-01T10:0{minute}:00Z",
            },
        )
    first = await http.get(f"/orgs/{org.id}/errors", params={"limit": 2}, headers=headers)
    assert first.status_code == 200
    page = first.json()
    assert [e["message"] for e in page["errors"]] == ["later 3", "later 2"]
    assert set(page["errors"][0]) >= {"error_id", "message", "timestamp", "severity"}
    assert 'rel="next"' in first.headers["link"]
    second = await http.get(
        f"/orgs/{org.id}/errors", headers=headers, params={"limit": 2, "cursor": page["next_cursor"]}
    )
    assert [e["message"] for e in second.json()["errors"]] == ["later 1", "Upload failed"]
    assert second.json()["next_cursor"] is None and "link" not in second.headers

    oldest = await http.get(
        f"/orgs/{org.id}/errors",
        headers=headers,
        params={"sortOrder": "asc", "severity": "high,critical", "from": "2026-11-01T00:00:00Z"},
    )
    assert [e["error_id"] for e in oldest.json()["errors"]] == [body["error_id"]]


async def test_post_honours_the_idempotency_key(http: httpx.AsyncClient, org: Org) -> None:
    headers = {"X-API-KEY": org.key, "X-Idempotency-Key": "rest-1"}
    payload = {"message": "Charged twice?", "severity": "CRITICAL"}
    first = await http.post(f"/orgs/{org.id}/errors", headers=headers, json=payload)
    again = await http.post(f"/orgs/{org.id}/errors", headers=headers, json=payload)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["error_id"] == again.json()["error_id"] and again.json()["replayed"] is True
    conflict = await http.post(f"/orgs/{org.id}/errors", headers=headers, json={**payload, "severity": "LOW"})
    assert_envelope(conflict, 409, "CONFLICT")


async def test_rest_errors_use_the_same_codes(http: httpx.AsyncClient, org: Org) -> None:
    url = f"/orgs/{org.id}/errors"
    assert_envelope(await http.get(url), 401, "INVALID_API_KEY")
    headers = {"X-API-KEY": org.key}
    assert_envelope(await http.get("/orgs/someone-else/errors", headers=headers), 404, "NOT_FOUND")

    bad = assert_envelope(
        await http.get(
            url,
            headers=headers,
            params={"limit": "0", "sortOrder": "sideways", "cursor": "zzz", "from": "soon"},
        ),
        400,
        "INVALID_REQUEST",
    )
    assert {d["field"] for d in bad["details"]} == {"limit", "cursor", "from", "sortOrder"}
    assert {"field": "sortOrder", "message": "Sort order must be 'asc' or 'desc'"} in bad["details"]

    invalid = assert_envelope(
        await http.post(url, headers=headers, json={"message": "", "severity": "LOW"}),
        422,
        "VALIDATION_ERROR",
    )
    assert [d["field"] for d in invalid["details"]] == ["message"]
    assert_envelope(await http.post(url, headers=headers, content=b"{oops"), 400, "INVALID_REQUEST")
    date = assert_envelope(
        await http.post(
            url, headers=headers, json={"message": "m", "severity": "LOW", "timestamp": "yesterday"}
        ),
        400,
        "INVALID_DATE_FORMAT",
    )
    assert [d["field"] for d in date["details"]] == ["timestamp"]


async def test_service_status_in_the_original_rest_shape(http: httpx.AsyncClient, org: Org) -> None:
    response = await http.get("/service_status", headers={"X-API-KEY": org.key})
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "Operational"
    assert body["services"] == {
        "api": "Operational",
        "storage": "Operational",
        "authentication": "Operational",
    }
    assert ISO_MS_UTC.match(body["timestamp"])
    assert_envelope(await http.get("/service_status"), 401, "INVALID_API_KEY")


async def test_metrics_after_some_traffic(http: httpx.AsyncClient, gql: GraphQLClient, org: Org) -> None:
    await log_error(gql, org.id, org.key, severity="CRITICAL")
    await gql.post("query Nope { nope }", key=org.key)
    text = (await http.get("/metrics")).text
    assert 'error_tracker_events_logged_total{severity="CRITICAL"}' in text
    assert 'error_tracker_requests_total{operation="Log",operation_type="mutation",outcome="OK"}' in text
    assert 'outcome="GRAPHQL_VALIDATION_FAILED"' in text
    assert "error_tracker_request_duration_seconds_bucket" in text
    assert "error_tracker_database_up 1.0" in text


async def ttl_of(server: LiveServer) -> int | None:
    """The expiry of the TTL index on `timestamp`, read with a client of the test's own."""
    async with AsyncMongoClient(server.settings.mongodb_uri) as client:
        indexes = await client[server.settings.mongodb_db]["error_events"].index_information()
    return next(
        (i.get("expireAfterSeconds") for i in indexes.values() if i["key"] == [("timestamp", 1)]), None
    )


async def test_retention_is_a_ttl_index_with_the_configured_expiry(server: LiveServer) -> None:
    assert await ttl_of(server) == int(server.settings.retention_days * 86400)


async def test_a_changed_retention_is_applied_to_the_existing_index(server: LiveServer) -> None:
    store = EventStore(server.app.state.runtime.client[server.settings.mongodb_db])
    try:
        server.call(lambda _: store.ensure_indexes(7.5))
        assert await ttl_of(server) == int(7.5 * 86400)
        server.call(lambda _: store.ensure_indexes(0))  # 0: keep forever, no TTL index
        assert await ttl_of(server) is None
    finally:
        server.call(lambda _: store.ensure_indexes(server.settings.retention_days))
    assert await ttl_of(server) == int(server.settings.retention_days * 86400)
