"""Persisted documents over the wire: Apollo's automatic persisted queries and trusted documents."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ulid import ULID

from app.persisted.inputs import ManifestError, load_manifest
from app.runtime.settings import Settings, SettingsError, load_settings
from tests.conftest import LiveServer, Org, _free_port, start_server

STATUS = "query Status { serviceStatus { status } }"


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def apq(document_hash: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": document_hash}}


async def test_unknown_hash_then_resend_then_hash_only_over_get(http: httpx.AsyncClient, org: Org) -> None:
    document = f"query Fresh{ULID()} {{ serviceStatus {{ status }} }}"  # unknown to the server so far
    headers = {"X-API-KEY": org.key}
    # 1. Hash only: not known yet, in the shape Apollo clients look for.
    first = await http.post("/graphql", json={"extensions": apq(sha(document))}, headers=headers)
    assert first.status_code == 404
    error = first.json()["errors"][0]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # 2. The client resends with the document: verified, stored, run.
    second = await http.post(
        "/graphql", json={"query": document, "extensions": apq(sha(document))}, headers=headers
    )
    assert second.status_code == 200 and second.json()["data"]["serviceStatus"]["status"]
    # 3. From now on the hash alone works, over GET too, and is cacheable per credential.
    third = await http.get("/graphql", params={"extensions": json.dumps(apq(sha(document)))}, headers=headers)
    assert third.status_code == 200 and third.json()["data"]["serviceStatus"]["status"]
    assert third.headers["cache-control"] == "public, max-age=10"
    assert "x-api-key" in third.headers["vary"].lower()


async def test_unknown_hash_over_get_is_not_cached(http: httpx.AsyncClient, org: Org) -> None:
    response = await http.get(
        "/graphql",
        params={"extensions": json.dumps(apq(sha(f"query Never{ULID()} {{ __typename }}")))},
        headers={"X-API-KEY": org.key, "Accept": "*/*"},  # */* would otherwise ask for GraphiQL
    )
    assert response.status_code == 404
    assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert response.headers["cache-control"] == "no-store"


async def test_a_wrong_hash_is_refused_and_not_stored(http: httpx.AsyncClient, org: Org) -> None:
    document = f"query Wrong{ULID()} {{ serviceStatus {{ status }} }}"
    other = sha(document + " ")
    response = await http.post(
        "/graphql", json={"query": document, "extensions": apq(other)}, headers={"X-API-KEY": org.key}
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INVALID_REQUEST"
    assert error["extensions"]["details"][0]["field"] == "extensions.persistedQuery.sha256Hash"
    again = await http.post("/graphql", json={"extensions": apq(other)}, headers={"X-API-KEY": org.key})
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_malformed_extension_lists_every_problem(http: httpx.AsyncClient, org: Org) -> None:
    response = await http.post(
        "/graphql",
        json={"query": STATUS, "extensions": {"persistedQuery": {"version": 2, "sha256Hash": "xyz"}}},
        headers={"X-API-KEY": org.key},
    )
    assert response.status_code == 400
    fields = {d["field"] for d in response.json()["errors"][0]["extensions"]["details"]}
    assert fields == {"extensions.persistedQuery.version", "extensions.persistedQuery.sha256Hash"}


async def test_every_instance_knows_a_stored_document(server: LiveServer, org: Org) -> None:
    document = f"query Shared{ULID()} {{ serviceStatus {{ status }} }}"
    async with httpx.AsyncClient(base_url=server.url) as client:
        stored = await client.post(
            "/graphql",
            json={"query": document, "extensions": apq(sha(document))},
            headers={"X-API-KEY": org.key},
        )
        assert stored.status_code == 200
    # Another instance on the same database (its own process cache is empty).
    settings = Settings(
        mongodb_uri=server.settings.mongodb_uri,
        mongodb_db=server.settings.mongodb_db,
        port=_free_port(),
        demo_data=False,
        status_probe_interval_seconds=60,
        feed_mode="poll",
        retention_days=server.settings.retention_days,
        _env_file=None,  # type: ignore[call-arg]
    )
    other, stop = start_server(settings)
    try:
        async with httpx.AsyncClient(base_url=other.url) as client:
            response = await client.post(
                "/graphql", json={"extensions": apq(sha(document))}, headers={"X-API-KEY": org.key}
            )
        assert response.status_code == 200 and response.json()["data"]["serviceStatus"]["status"]
    finally:
        stop()


# --- trusted documents -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trusted_server(
    mongo_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    manifest = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{"id": sha(STATUS), "name": "Status", "type": "query", "body": STATUS}],
    }
    path = tmp_path_factory.mktemp("manifest") / "persisted-query-manifest.json"
    path.write_text(json.dumps(manifest))
    settings = Settings(
        mongodb_uri=mongo_uri,
        mongodb_db=f"test_{str(ULID()).lower()}",
        port=_free_port(),
        demo_data=False,
        status_probe_interval_seconds=60,
        feed_mode="poll",
        retention_days=24000,
        trusted_documents=path,
        _env_file=None,  # type: ignore[call-arg]
    )
    live, stop = start_server(settings)
    key = live.call(lambda s: s.auth.create_key(org_id=None, admin=True, name="trusted")).plaintext
    try:
        yield live, {"X-API-KEY": key}
    finally:
        stop()


async def test_trusted_documents_run_by_id_or_text_and_nothing_else(
    trusted_server: tuple[LiveServer, dict[str, str]],
) -> None:
    live, headers = trusted_server
    async with httpx.AsyncClient(base_url=live.url) as client:
        by_id = await client.post("/graphql", json={"extensions": apq(sha(STATUS))}, headers=headers)
        assert by_id.status_code == 200 and by_id.json()["data"]["serviceStatus"]["status"]
        by_text = await client.post("/graphql", json={"query": STATUS}, headers=headers)
        assert by_text.status_code == 200 and by_text.json()["data"]["serviceStatus"]["status"]
        other = "{ serviceStatus { status timestamp } }"
        for body in ({"query": other}, {"query": other, "extensions": apq(sha(other))}):
            refused = await client.post("/graphql", json=body, headers=headers)
            assert refused.status_code == 403
            assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"


def test_manifests_of_apollo_and_relay_are_read(tmp_path: Path) -> None:
    relay = tmp_path / "relay.json"
    relay.write_text(json.dumps({"ABC123": STATUS}))
    assert load_manifest(relay) == {"abc123": STATUS}
    for bad in (
        "[]",
        "{}",
        '{"format": "apollo-persisted-query-manifest", "version": 2, "operations": []}',
        "nope",
    ):
        path = tmp_path / "bad.json"
        path.write_text(bad)
        with pytest.raises(ManifestError):
            load_manifest(path)
    with pytest.raises(SettingsError, match="TRUSTED_DOCUMENTS"):
        load_settings(trusted_documents=tmp_path / "missing.json", _env_file=None)
