"""GraphQL over HTTP: the graphql-http audit suite and the negotiation rules it checks."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx

from tests.conftest import LiveServer, Org

AUDIT = Path(__file__).parent / "audit"
GRAPHQL_RESPONSE = "application/graphql-response+json"


async def test_graphql_http_audit_passes_every_must_and_should(server: LiveServer, org: Org) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for the graphql-http audit"
    assert (AUDIT / "node_modules" / "graphql-http").is_dir(), "run `make test` (it installs the audit suite)"
    process = await asyncio.create_subprocess_exec(
        node,
        str(AUDIT / "graphql_http_audit.mjs"),
        f"{server.url}/graphql",
        org.key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    results = json.loads(out)
    assert len(results) >= 50
    failing = [f"{r['status']}: {r['name']}: {r['reason']}" for r in results if r["status"] != "ok"]
    assert failing == []


async def test_request_errors_answer_400_without_data_under_graphql_response_json(
    http: httpx.AsyncClient, org: Org
) -> None:
    headers = {"X-API-KEY": org.key, "Accept": GRAPHQL_RESPONSE}
    for query in ("{ serviceStatus {", "{ nope }"):
        response = await http.post("/graphql", json={"query": query}, headers=headers)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
        assert "data" not in response.json() and response.json()["errors"]
    # A field error is an execution result: 200, with data.
    field_error = await http.post(
        "/graphql", json={"query": '{ errorEvent(orgId: "nope", id: "x") { id } }'}, headers=headers
    )
    assert field_error.status_code == 200
    assert field_error.json()["data"] == {"errorEvent": None} and field_error.json()["errors"]
    # Plain application/json keeps 200 and a null data entry for every GraphQL result.
    legacy = await http.post(
        "/graphql", json={"query": "{ nope }"}, headers={"X-API-KEY": org.key, "Accept": "application/json"}
    )
    assert legacy.status_code == 200 and legacy.headers["content-type"].startswith("application/json")
    assert legacy.json()["data"] is None


async def test_mutations_over_get_and_unknown_media_types_are_refused(
    http: httpx.AsyncClient, org: Org
) -> None:
    headers = {"X-API-KEY": org.key}
    query = 'mutation { setServiceStatus(service: "api", status: OPERATIONAL) { status } }'
    over_get = await http.get("/graphql", params={"query": query}, headers=headers)
    assert over_get.status_code == 405 and over_get.headers["allow"] == "POST"
    assert over_get.json()["errors"][0]["extensions"]["status"] == 405
    text = await http.post(
        "/graphql", content=b"{ serviceStatus { status } }", headers={**headers, "Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    ok = await http.get("/graphql", params={"query": "{ serviceStatus { status } }"}, headers=headers)
    assert ok.status_code == 200 and ok.json()["data"]["serviceStatus"]["status"]
