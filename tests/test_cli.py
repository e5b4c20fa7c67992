"""The management command line against the configured database, as an operator would use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ulid import ULID

from tests.conftest import GraphQLClient, LiveServer
from tests.documents import ORG_ERRORS


def cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MONGODB_URI": server.settings.mongodb_uri or "",
        "MONGODB_DB": server.settings.mongodb_db,
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


async def test_operator_creates_an_org_and_a_key_that_works(server: LiveServer, gql: GraphQLClient) -> None:
    slug = f"cli-{str(ULID()).lower()[-10:]}"
    created = cli(server, "orgs", "create", slug, "--name", "CLI Org", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["id"] == slug

    listed = json.loads(cli(server, "orgs", "list", "--json").stdout)
    assert slug in [o["id"] for o in listed]

    key = json.loads(cli(server, "keys", "create", "--org", slug, "--name", "ci", "--json").stdout)
    assert key["scope"] == f"org:{slug}" and key["apiKey"].startswith(key["prefix"] + "_")
    response = await gql.post(ORG_ERRORS, {"orgId": slug}, key=key["apiKey"])
    assert response.json()["data"]["orgErrors"]["totalCount"] == 0

    keys = json.loads(cli(server, "keys", "list", "--org", slug, "--json").stdout)
    assert [k["prefix"] for k in keys] == [key["prefix"]]
    assert "apiKey" not in keys[0]  # secrets are never shown again

    revoked = cli(server, "keys", "revoke", key["prefix"])
    assert revoked.returncode == 0, revoked.stderr
    assert (await gql.post(ORG_ERRORS, {"orgId": slug}, key=key["apiKey"])).status_code == 401
    again = json.loads(cli(server, "keys", "list", "--org", slug, "--json").stdout)
    assert again[0]["revokedAt"] is not None


def test_cli_reports_bad_input_clearly(server: LiveServer) -> None:
    bad_slug = cli(server, "orgs", "create", "Not A Slug")
    assert bad_slug.returncode == 1 and "slug" in bad_slug.stderr
    missing_org = cli(server, "keys", "create", "--org", "no-such-org", "--json")
    assert missing_org.returncode == 1
    assert json.loads(missing_org.stdout)["error"]["code"] == "NOT_FOUND"
    bad_setting = subprocess.run(
        [sys.executable, "-m", "app", "orgs", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "PORT": "not-a-port"},
        timeout=60,
        check=False,
    )
    assert bad_setting.returncode == 2 and "PORT" in bad_setting.stderr


async def test_operator_manages_status_components(
    server: LiveServer, gql: GraphQLClient, admin_key: str
) -> None:
    name = f"cron-{os.getpid()}-{id(server) % 10_000}"
    made = cli(
        server, "components", "create", name, "--group", "Jobs", "--heartbeat-interval", "300", "--json"
    )
    assert made.returncode == 0, made.stderr
    row = json.loads(made.stdout)
    assert row["heartbeat"]["pushPath"].startswith("/api/push/") and row["group"] == "Jobs"
    # The serving instance shows it within a tick, and its push URL works.
    push = await gql.http.get(row["heartbeat"]["pushPath"], params={"status": "up"})
    assert push.status_code == 200
    listed = json.loads(cli(server, "components", "list", "--json").stdout)
    assert name in [r["name"] for r in listed]
    updated = cli(server, "components", "update", name, "--order", "5", "--hide-uptime", "--json")
    assert json.loads(updated.stdout)["showUptime"] is False
    duplicate = cli(server, "components", "create", name)
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr
    assert cli(server, "components", "delete", name).returncode == 0
    missing = cli(server, "components", "delete", name)
    assert missing.returncode == 1 and "No custom component" in missing.stderr
