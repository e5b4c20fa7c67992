"""Every client mistake is a catalogued JSON error with the request id (never a plain-text 500 or an
unmasked exception), is logged as one line, and never counts against the platform's `api` status."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from tests.conftest import GraphQLClient, LiveServer, Org

CLIENT_CODES = {
    "INVALID_REQUEST",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "QUERY_TOO_COMPLEX",
    "INVALID_DATE_FORMAT",
    "VALIDATION_ERROR",
}


def catalogued(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/"), response.text[:200]
    body = response.json()
    errors = body["errors"] if "errors" in body else [body["error"]]
    for error in errors:
        code = error["extensions"]["code"] if "extensions" in error else error["code"]
        request_id = error["extensions"]["requestId"] if "extensions" in error else error["requestId"]
        assert code in CLIENT_CODES, body
        assert request_id == response.headers["x-request-id"]
    assert response.status_code < 500, body
    return errors[0]


BODIES = {
    "null": b"null",
    "a number": b"42",
    "a list of numbers": b"[1, 2]",
    "a string": b'"query"',
    "invalid UTF-8": b'{"query": "{ serviceStatus { status } }", "x": "\xff\xfe"}',
    "variables 1,000 deep": b'{"query": "query($v: JSON) { serviceStatus { status } }", "variables": {"v": '
    + b'{"a": ' * 1000
    + b"1"
    + b"}" * 1000
    + b"}}",
    "variables 100,000 deep": b'{"query": "{ serviceStatus { status } }", "variables": {"v": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}",
    "an integer of 5,000 digits": b'{"query": "{ serviceStatus { status } }", "variables": {"n": '
    + b"9" * 5000
    + b"}}",
    "query not a string": b'{"query": 42}',
    "variables not an object": b'{"query": "{ serviceStatus { status } }", "variables": [1]}',
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
async def test_malformed_bodies(http: httpx.AsyncClient, org: Org, body: bytes) -> None:
    response = await http.post(
        "/graphql", content=body, headers={"X-API-KEY": org.key, "Content-Type": "application/json"}
    )
    catalogued(response)


async def test_a_page_size_of_5000_digits(gql: GraphQLClient, org: Org) -> None:
    response = await gql.post(
        f'{{ orgErrors(orgId: "{org.id}", first: {"9" * 5000}) {{ totalCount }} }}', key=org.key
    )
    catalogued(response)
    response = await gql.post(
        "query($n: Int) { orgErrors(orgId: $o, first: $n) { totalCount } }".replace("$o", f'"{org.id}"'),
        {"n": int("9" * 4000)},
        key=org.key,
    )
    catalogued(response)


async def test_a_subscription_over_plain_post_says_how_to_subscribe(gql: GraphQLClient, org: Org) -> None:
    response = await gql.post("subscription { serviceStatusChanged { status } }", key=org.key)
    error = catalogued(response)
    assert "WebSocket" in error["message"] and "graphql-transport-ws" in error["message"]


DATES = ["1900-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00"]


@pytest.mark.parametrize("date", DATES)
async def test_out_of_range_dates_on_graphql_and_rest(
    gql: GraphQLClient, http: httpx.AsyncClient, org: Org, date: str
) -> None:
    query = "query($f: ErrorFilter) { orgErrors(orgId: $o, filter: $f) { totalCount nodes { id } } }"
    for variables in ({"f": {"from": date}}, {"f": {"to": date}}):
        catalogued(await gql.post(query.replace("$o", f'"{org.id}"'), variables, key=org.key))
    stats = "query($f: DateTime!) { errorStats(orgId: $o, from: $f, to: $t) { total } }"
    other = "2026-01-01T00:00:00Z" if date.startswith("9") else "1950-01-01T00:00:00Z"
    for start, end in ((date, other), (other, date)):
        document = stats.replace("$o", f'"{org.id}"').replace("$t", json.dumps(end))
        response = await gql.post(document, {"f": start}, key=org.key)
        if response.json().get("errors"):
            catalogued(response)
    mutation = "mutation($e: ErrorInput!) { logError(orgId: $o, error: $e) { errorId } }"
    response = await gql.post(
        mutation.replace("$o", f'"{org.id}"'),
        {"e": {"message": "m", "severity": "LOW", "timestamp": date}},
        key=org.key,
    )
    if response.json().get("errors"):
        catalogued(response)
    for params in ({"from": date}, {"to": date}):
        catalogued(await http.get(f"/orgs/{org.id}/errors", params=params, headers={"X-API-KEY": org.key}))
    response = await http.post(
        f"/orgs/{org.id}/errors",
        json={"message": "m", "severity": "LOW", "timestamp": date},
        headers={"X-API-KEY": org.key},
    )
    if response.status_code >= 300:
        catalogued(response)


async def test_client_mistakes_never_count_as_server_failures(
    gql: GraphQLClient, http: httpx.AsyncClient, server: LiveServer, org: Org
) -> None:
    """25 out-of-range dates once turned the platform's `api` component DEGRADED for everyone."""
    error_rate = server.services.status.error_rate
    requests_before, failures_before = error_rate.counts()
    query = "query($f: ErrorFilter) { orgErrors(orgId: $o, filter: $f) { totalCount } }".replace(
        "$o", f'"{org.id}"'
    )
    for _ in range(15):
        catalogued(await gql.post(query, {"f": {"from": "1900-01-01T00:00:00Z"}}, key=org.key))
        headers = {"Content-Type": "application/json", "X-API-KEY": org.key}
        catalogued(await http.post("/graphql", content=b"null", headers=headers))
    await gql.data("{ serviceStatus { status } }", key=org.key)  # after the 30 lines above are counted
    requests_after, failures_after = error_rate.counts()
    assert requests_after >= requests_before + 30
    assert failures_after <= failures_before  # (older failures of other tests may leave the window)


def test_readable_log_lines_escape_control_characters() -> None:
    from app.runtime.logging import _ReadableFormatter

    formatter = _ReadableFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.makeLogRecord(
        {
            "msg": "%s %s %s",
            "args": ("GET", "/orgs/x\n2026-01-01 INFO app.request: forged\r/errors", 200),
            "org_id": "a\nb\u2028c",
        }
    )
    line = formatter.format(record)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert "/orgs/x\\x0a2026-01-01 INFO app.request: forged\\x0d/errors" in line
    assert "org_id=a\\x0ab\\u2028c" in line


async def test_a_forged_line_in_the_path_stays_on_its_line(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    from app.runtime.logging import _ReadableFormatter

    caplog.set_level(logging.INFO, logger="app.request")
    response = await http.get("/orgs/x%0A2026-11-30%20INFO%20forged/errors")
    assert response.status_code == 401
    for _ in range(200):  # the line is written once the response is sent, on the server's thread
        records = [r for r in caplog.records if r.name == "app.request" and "forged" in r.getMessage()]
        if records:
            break
        await asyncio.sleep(0.01)
    assert records and "\n" not in _ReadableFormatter("%(message)s").format(records[0])


async def test_a_client_that_disconnects_mid_body_is_one_log_line(
    server: LiveServer, org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    host, port = server.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"X-API-KEY: {org.key}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"query": "{ serv'
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the server reads the partial body (nothing on this side to await)
    writer.close()
    await writer.wait_closed()
    for _ in range(200):
        lines = [r for r in caplog.records if getattr(r, "outcome", None) == "CLIENT_DISCONNECTED"]
        if lines:
            break
        await asyncio.sleep(0.01)
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
