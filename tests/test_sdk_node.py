"""The real JavaScript SDK (npm @sentry/node) pointed at a live server, run with node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import GraphQLClient, LiveServer, Org
from tests.sdk_support import make_project, sdk_events
from tests.test_subscriptions import receive, session, subscribe, wait_for_subscribers

SDK_DIR = Path(__file__).parent / "sdk"
SUB = "subscription($o: ID!) { errorLogged(orgId: $o) { id platform exceptions { type } } }"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (SDK_DIR / "node_modules" / "@sentry" / "node").is_dir(),
    reason="node and tests/sdk/node_modules (make test installs them)",
)


async def test_node_sdk_capture_exception_compressed(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    project = make_project(server, org, "web")
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "n1", SUB, {"o": org.id})
        await wait_for_subscribers(server, 1)
        process = await asyncio.to_thread(
            subprocess.run,
            ["node", str(SDK_DIR / "send.mjs"), project.dsn],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        assert process.returncode == 0, process.stderr
        live = (await receive(ws))["payload"]["data"]["errorLogged"]
    event_id, encodings = process.stdout.split("\n")[:2]
    assert "gzip" in json.loads(encodings)

    page = await sdk_events(gql, project)
    (crash,) = page["nodes"]
    assert live == {"id": crash["id"], "platform": "node", "exceptions": [{"type": "TypeError"}]}
    assert crash["message"] == "TypeError: card declined"
    assert (crash["environment"], crash["release"], crash["level"]) == ("production", "web@2.0.0", "error")
    assert {"key": "runtime", "value": "node"} in crash["tags"]
    frames = crash["exceptions"][0]["frames"]
    assert [f["function"] for f in frames if f["inApp"]][-2:] == ["checkout", "chargeCard"]
    throw_line = (
        (SDK_DIR / "send.mjs").read_text().split("\n").index('  throw new TypeError("card declined");')
    )
    assert frames[-1]["filename"].endswith("send.mjs") and frames[-1]["lineno"] == throw_line + 1
    assert len(crash["breadcrumbs"]) == 100
    assert crash["sdk"]["name"] == "sentry.javascript.node"
    assert len(event_id) == 32
