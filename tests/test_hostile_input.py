"""Property-based: random and adversarial values for every argument and input field never yield a 500
or a stack trace, only a catalogued error or a correct result; what is stored reads back unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.errors import ErrorCode
from app.ratelimit.service import RateLimiter
from tests.conftest import LiveServer, Org, make_org
from tests.documents import ERROR_EVENT, LOG_ERROR, ORG_ERRORS

CATALOGUED = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL_ERROR.value}
PROFILE = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)  # JSON cannot carry lone surrogates
nasty = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "$where",
        "$gt",
        "a.b",
        "__proto__",
        "'; DROP TABLE x; --",
        "\u202e",
        "\U0001f4a5" * 50,
        "x" * 9000,
        "../../etc/passwd",
        '{"$ne": null}',
        "null",
        "0",
        "-1",
        "1e309",
        "NaN",
        "2025-11-20T17:00:00Z",
        "error-01JD3Q8X4T9W2M7V5K6N8P0RZQ",
        "djE6ZXJyb3ItMDFNODUwMU1XQTNDVDdLU0NNVDBLQjBYQ1Q",
    ]
)
strings = st.one_of(text, nasty)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, strings),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(strings, inner, max_size=5)),
    max_leaves=30,
)
any_value = st.one_of(json_values, st.dictionaries(strings, json_values, max_size=4))
severity = st.one_of(st.sampled_from(["LOW", "MEDIUM", "HIGH", "CRITICAL"]), strings)
dates = st.one_of(strings, st.datetimes().map(lambda d: d.isoformat()))


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    original = server.services.rate_limiter
    server.services.rate_limiter = RateLimiter(reads=10**9, writes=10**9, window_seconds=60)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
    server.services.rate_limiter = original


@pytest.fixture
def hostile_org(server: LiveServer) -> Org:
    return make_org(server)


def call(client: httpx.Client, key: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"X-API-KEY": key}
    )
    assert response.status_code in (200, 400, 413), response.text
    body = response.json()
    assert "Traceback" not in response.text
    for error in body.get("errors", []):
        assert error["extensions"]["code"] in CATALOGUED, error
    return body


@PROFILE
@given(
    message=st.one_of(strings, any_value),
    sev=severity,
    timestamp=st.one_of(st.none(), dates),
    code=st.one_of(st.none(), strings),
    source=st.one_of(st.none(), strings),
    context=st.one_of(st.none(), any_value),
    key=st.one_of(st.none(), strings),
)
def test_log_error_with_anything(
    client: httpx.Client,
    hostile_org: Org,
    message: Any,
    sev: Any,
    timestamp: Any,
    code: Any,
    source: Any,
    context: Any,
    key: Any,
) -> None:
    error = {
        "message": message,
        "severity": sev,
        "timestamp": timestamp,
        "code": code,
        "source": source,
        "context": context,
    }
    body = call(client, hostile_org.key, LOG_ERROR, {"orgId": hostile_org.id, "error": error, "key": key})
    if "errors" in body:
        return
    stored = body["data"]["logError"]["error"]
    assert (stored["message"], stored["code"], stored["source"], stored["context"]) == (
        message,
        code,
        source,
        context,
    )
    fetched = call(client, hostile_org.key, ERROR_EVENT, {"orgId": hostile_org.id, "id": stored["id"]})
    assert fetched["data"]["errorEvent"] == stored


@PROFILE
@given(
    message=strings.filter(lambda m: 0 < len(m) <= 8192 and m.strip()),
    context=st.dictionaries(strings, json_values, max_size=6),
    sev=st.sampled_from(["LOW", "MEDIUM", "HIGH", "CRITICAL"]),
)
def test_whatever_is_accepted_reads_back_exactly(
    client: httpx.Client, hostile_org: Org, message: str, context: dict, sev: str
) -> None:
    """Well-shaped input full of hostile content: stored when within the rules, and read back unchanged."""
    body = call(
        client,
        hostile_org.key,
        LOG_ERROR,
        {"orgId": hostile_org.id, "error": {"message": message, "severity": sev, "context": context}},
    )
    if "errors" in body:  # only the context rules (size, depth, 64-bit integers) may refuse it
        assert body["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR", body
        assert [d["field"] for d in body["errors"][0]["extensions"]["details"]] == ["error.context"]
        return
    stored = body["data"]["logError"]["error"]
    assert (stored["message"], stored["context"], stored["severity"]) == (message, context, sev)
    fetched = call(client, hostile_org.key, ERROR_EVENT, {"orgId": hostile_org.id, "id": stored["id"]})
    assert fetched["data"]["errorEvent"] == stored


@PROFILE
@given(
    org_id=st.one_of(strings, st.just("ORG")),
    first=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    after=st.one_of(st.none(), strings),
    order=st.one_of(st.none(), st.sampled_from(["ASC", "DESC"]), strings),
    flt=st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "severities": st.lists(severity, max_size=6),
                "minSeverity": severity,
                "from": dates,
                "to": dates,
                "code": strings,
                "source": strings,
                "fingerprint": strings,
                "search": strings,
            },
        ),
    ),
)
def test_org_errors_with_anything(
    client: httpx.Client, hostile_org: Org, org_id: str, first: Any, after: Any, order: Any, flt: Any
) -> None:
    org = hostile_org.id if org_id == "ORG" else org_id
    body = call(
        client,
        hostile_org.key,
        ORG_ERRORS,
        {"orgId": org, "first": first, "after": after, "sortOrder": order, "filter": flt},
    )
    if "errors" not in body:
        assert len(body["data"]["orgErrors"]["nodes"]) <= (first or 20)


@PROFILE
@given(event_id=strings, org_id=strings)
def test_error_event_with_anything(
    client: httpx.Client, hostile_org: Org, event_id: str, org_id: str
) -> None:
    call(client, hostile_org.key, ERROR_EVENT, {"orgId": org_id, "id": event_id})
    mine = call(client, hostile_org.key, ERROR_EVENT, {"orgId": hostile_org.id, "id": event_id})
    assert mine["data"]["errorEvent"] is None


@PROFILE
@given(document=strings)
def test_random_documents(client: httpx.Client, hostile_org: Org, document: str) -> None:
    call(client, hostile_org.key, document, {})
