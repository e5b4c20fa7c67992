"""The error contract: one shape, catalogued codes, every problem of an input at once."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import GraphQLClient, LiveServer, Org
from tests.documents import LOG_ERROR, ORG_ERRORS
from tests.helpers import ISO_MS_UTC

REQUEST_ID = re.compile(r"^req_[0-9A-HJKMNP-TV-Z]{26}$")


def assert_shape(error: dict, code: str, status: int) -> None:
    ext = error["extensions"]
    assert ext["code"] == code, error
    assert ext["status"] == status
    assert ISO_MS_UTC.match(ext["timestamp"])
    assert ext["requestId"]


def fields(error: dict) -> list[str]:
    return [d["field"] for d in error["extensions"]["details"]]


async def test_every_problem_of_an_input_is_reported_together(gql: GraphQLClient, org: Org) -> None:
    error = await gql.error(
        LOG_ERROR,
        {
            "orgId": org.id,
            "error": {
                "message": "",
                "severity": "HIGH",
                "timestamp": "yesterday",
                "code": "has space",
                "source": "x" * 129,
                "context": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
            },
            "key": "not ok!",
        },
        key=org.key,
    )
    # A malformed argument (the idempotency key) makes the whole input INVALID_REQUEST...
    assert_shape(error, "INVALID_REQUEST", 400)
    assert error["path"] == ["logError"]
    # ...and every problem is listed, with the path as the client wrote it.
    assert fields(error) == [
        "error.message",
        "error.timestamp",
        "error.code",
        "error.source",
        "error.context",
        "idempotencyKey",
    ]
    assert all(d["message"] for d in error["extensions"]["details"])


@pytest.mark.parametrize(
    ("error", "field", "message_part"),
    [
        ({"message": "   "}, "error.message", "blank"),
        ({"message": "m" * 8193}, "error.message", "8192"),
        ({"context": {"pad": "x" * 16 * 1024}}, "error.context", "16384 bytes"),
        ({"context": {"a": {"b": {"c": {"d": {"e": {}}}}}}}, "error.context", "5 levels"),
        ({"context": ["not", "an", "object"]}, "error.context", "JSON object"),
        ({"context": {"huge": 2**70}}, "error.context", "JSON"),
        ({"code": "bad code"}, "error.code", "128 characters"),
        ({"source": "-leading-dash"}, "error.source", "128 characters"),
        ({"timestamp": (datetime.now(UTC) + timedelta(minutes=10)).isoformat()}, "error.timestamp", "future"),
        ({"timestamp": "1969-12-31T23:59:59Z"}, "error.timestamp", "1970"),
    ],
)
async def test_rule_violations_are_validation_errors(
    gql: GraphQLClient, org: Org, error: dict, field: str, message_part: str
) -> None:
    body = {"message": "fine", "severity": "LOW", **error}
    result = await gql.error(LOG_ERROR, {"orgId": org.id, "error": body}, key=org.key)
    assert_shape(result, "VALIDATION_ERROR", 422)
    assert fields(result) == [field]
    assert message_part in result["extensions"]["details"][0]["message"]


async def test_limits_are_inclusive(gql: GraphQLClient, org: Org) -> None:
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    ok = {
        "message": "m" * 8192,
        "severity": "LOW",
        "code": "C" * 128,
        "context": deep,
        "timestamp": (datetime.now(UTC) + timedelta(minutes=4)).isoformat(),
    }
    data = await gql.data(LOG_ERROR, {"orgId": org.id, "error": ok}, key=org.key)
    assert data["logError"]["error"]["context"] == deep


@pytest.mark.parametrize("bad", ["2025-13-01T00:00:00Z", "20 Nov 2025", "1700000000", "", "2025-11-20T25:00"])
async def test_malformed_dates_are_invalid_date_format(gql: GraphQLClient, org: Org, bad: str) -> None:
    error = await gql.error(ORG_ERRORS, {"orgId": org.id, "filter": {"from": bad, "to": bad}}, key=org.key)
    assert_shape(error, "INVALID_DATE_FORMAT", 400)
    assert fields(error) == ["filter.from", "filter.to"]


async def test_a_number_is_not_a_date(gql: GraphQLClient, org: Org) -> None:
    error = await gql.error(
        LOG_ERROR,
        {"orgId": org.id, "error": {"message": "m", "severity": "LOW", "timestamp": 1700000000}},
        key=org.key,
    )
    assert_shape(error, "INVALID_DATE_FORMAT", 400)
    assert fields(error) == ["error.timestamp"]


@pytest.mark.parametrize(
    ("variables", "expected_fields"),
    [
        ({"first": 0}, ["first"]),
        ({"first": 101}, ["first"]),
        ({"first": -5, "after": "bm9wZQ"}, ["first", "after"]),
        ({"after": "!!!"}, ["after"]),
        ({"after": "djE6ZXJyb3ItMTIz"}, ["after"]),  # base64 of "v1:error-123": ours in form, not in content
        ({"filter": {"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}}, ["filter"]),
        ({"filter": {"search": "s" * 257}}, ["filter.search"]),
    ],
)
async def test_bad_arguments_are_invalid_request(
    gql: GraphQLClient, org: Org, variables: dict, expected_fields: list[str]
) -> None:
    error = await gql.error(ORG_ERRORS, {"orgId": org.id, **variables}, key=org.key)
    assert_shape(error, "INVALID_REQUEST", 400)
    assert fields(error) == expected_fields


async def test_page_size_message_matches_the_contract(gql: GraphQLClient, org: Org) -> None:
    error = await gql.error(ORG_ERRORS, {"orgId": org.id, "first": 0}, key=org.key)
    assert error["extensions"]["details"][0]["message"].startswith("Limit must be a positive number")


@pytest.mark.parametrize("org_id", ["Has-Upper", "-lead", "a" * 65, "white space", "ünïcode", ""])
async def test_malformed_org_id_is_invalid_request(gql: GraphQLClient, admin_key: str, org_id: str) -> None:
    error = await gql.error(ORG_ERRORS, {"orgId": org_id}, key=admin_key)
    assert_shape(error, "INVALID_REQUEST", 400)
    assert fields(error) == ["orgId"]


async def test_wrongly_typed_variables_are_invalid_request(gql: GraphQLClient, org: Org) -> None:
    error = await gql.error(
        LOG_ERROR, {"orgId": org.id, "error": {"message": 5, "severity": "SEVERE"}}, key=org.key
    )
    assert_shape(error, "INVALID_REQUEST", 400)
    assert fields(error)[0].startswith("error")


async def test_document_errors(gql: GraphQLClient, org: Org) -> None:
    parse = await gql.error("{ orgErrors(orgId: ", key=org.key)
    assert_shape(parse, "GRAPHQL_PARSE_FAILED", 400)
    invalid = await gql.error('{ orgErrors(orgId: "x") { nope } }', key=org.key)
    assert_shape(invalid, "GRAPHQL_VALIDATION_FAILED", 400)
    assert "nope" in invalid["message"]


async def test_request_ids(gql: GraphQLClient, org: Org, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.request")
    response = await gql.post(ORG_ERRORS, {"orgId": "missing-org"}, key=org.key)
    generated = response.headers["x-request-id"]
    assert REQUEST_ID.match(generated)
    assert response.json()["errors"][0]["extensions"]["requestId"] == generated

    kept = await gql.post(
        ORG_ERRORS, {"orgId": org.id}, key=org.key, headers={"X-Request-ID": "client.id-42_x"}
    )
    assert kept.headers["x-request-id"] == "client.id-42_x"
    replaced = await gql.post(ORG_ERRORS, {"orgId": org.id}, key=org.key, headers={"X-Request-ID": "bad id!"})
    assert REQUEST_ID.match(replaced.headers["x-request-id"])

    # The same id is in the server's one log line for the request, with its outcome.
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == generated]
    assert len(lines) == 1
    assert lines[0].outcome == "NOT_FOUND" and lines[0].org_id == "missing-org"
    assert lines[0].operation == "List" and lines[0].operation_type == "query"


async def test_unexpected_errors_are_masked_and_logged(
    gql: GraphQLClient,
    server: LiveServer,
    org: Org,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def explode(*_: object) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(server.services.events, "get", explode)
    response = await gql.post(
        'query($o: ID!) { errorEvent(orgId: $o, id: "error-x") { id } }', {"o": org.id}, key=org.key
    )
    error = response.json()["errors"][0]
    assert_shape(error, "INTERNAL_ERROR", 500)
    assert error["message"] == "An unexpected error occurred"
    assert "hunter2" not in response.text
    request_id = error["extensions"]["requestId"]
    logged = [
        r for r in caplog.records if r.levelno == logging.ERROR and getattr(r, "request_id", "") == request_id
    ]
    assert logged and logged[0].exc_info and "hunter2" in str(logged[0].exc_info[1])


async def test_transport_errors_have_the_same_shape(gql: GraphQLClient, org: Org) -> None:
    response = await gql.http.post(
        "/graphql", content=b"{not json", headers={"X-API-KEY": org.key, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert_shape(response.json()["errors"][0], "INVALID_REQUEST", 400)


async def test_oversized_bodies_are_refused_with_413(
    gql: GraphQLClient, server: LiveServer, org: Org
) -> None:
    huge = "x" * (server.settings.max_body_bytes + 1)
    response = await gql.post(
        LOG_ERROR, {"orgId": org.id, "error": {"message": huge, "severity": "LOW"}}, key=org.key
    )
    assert response.status_code == 413
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INVALID_REQUEST" and error["extensions"]["status"] == 413
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]

    async def chunks():  # no Content-Length: the limit still holds while streaming
        for _ in range(3):
            yield b"x" * (server.settings.max_body_bytes // 2)

    streamed = await gql.http.post(
        "/graphql", content=chunks(), headers={"X-API-KEY": org.key, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
