"""Security basics: no credential in logs, CORS, and no cross-site state change."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from app.runtime.settings import Settings
from tests.conftest import GraphQLClient, LiveServer, Org, _free_port, start_server
from tests.documents import LOG_ERROR, SERVICE_STATUS


async def test_credentials_never_reach_the_logs(
    gql: GraphQLClient, org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await gql.post(SERVICE_STATUS, key=org.key)
    await gql.post(SERVICE_STATUS, key=org.key + "x")
    await gql.post(LOG_ERROR, {"orgId": "nope", "error": {"message": "m", "severity": "LOW"}}, key=org.key)
    secret = org.key.split("_", 2)[2]
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in str(vars(record))


async def test_cross_site_simple_posts_and_get_mutations_change_nothing(gql: GraphQLClient, org: Org) -> None:
    # A browser can send these cross-site without a preflight; none of them may act.
    mutation = (
        'mutation($o: ID!) { logError(orgId: $o, error: {message: "csrf", severity: LOW}) { errorId } }'
    )
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        response = await gql.http.post(
            "/graphql",
            content=mutation.encode(),
            headers={"X-API-KEY": org.key, "Content-Type": content_type},
        )
        assert response.status_code == 415
    assert (
        await gql.http.get(
            "/graphql",
            params={"query": mutation, "variables": json.dumps({"o": org.id})},
            headers={"X-API-KEY": org.key},
        )
    ).status_code == 405
    data = await gql.data(
        "query($o: ID!) { orgErrors(orgId: $o) { totalCount } }", {"o": org.id}, key=org.key
    )
    assert data["orgErrors"]["totalCount"] == 0


async def test_cors_is_open_in_development_and_closed_in_production(server: LiveServer) -> None:
    preflight = {
        "Origin": "https://dash.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type",
    }
    async with httpx.AsyncClient(base_url=server.url) as client:
        allowed = await client.options("/graphql", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] in (
        "*",
        preflight["Origin"],
    )

    production = Settings(
        mongodb_uri=server.settings.mongodb_uri,
        mongodb_db=server.settings.mongodb_db,
        environment="production",
        port=_free_port(),
        retention_days=server.settings.retention_days,
        _env_file=None,
    )  # type: ignore[call-arg]
    live, stop = start_server(production)
    try:
        async with httpx.AsyncClient(base_url=live.url) as client:
            refused = await client.options("/graphql", headers=preflight)
            graphiql = await client.get("/graphql", headers={"Accept": "text/html"})
        assert "access-control-allow-origin" not in refused.headers
        assert graphiql.status_code != 200 or "graphiql" not in graphiql.text.lower()
    finally:
        stop()
