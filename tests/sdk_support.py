"""Shared by the SDK ingestion tests: projects with a DSN, running SDK scripts, reading events back."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from tests.conftest import GraphQLClient, LiveServer, Org

SDK_EVENTS = """
query Sdk($orgId: ID!, $filter: ErrorFilter) {
  orgErrors(orgId: $orgId, filter: $filter, first: 50, sortOrder: ASC) {
    totalCount
    nodes {
      id message severity level environment release platform projectId handled fingerprint
      tags { key value }
      exceptions { type value module mechanism handled
        frames { filename function module lineno inApp contextLine } }
      user { id ipAddress }
      request { url method headers { name value } }
      breadcrumbs { message category }
      contexts
      sdk { name version }
    }
  }
}"""


@dataclass
class Project:
    id: int
    org: Org
    dsn: str
    public_key: str


def make_project(server: LiveServer, org: Org, name: str = "backend") -> Project:
    project = server.call(lambda s: s.projects.create({"orgId": org.id, "name": name}))
    key = project.keys[0]
    return Project(project.id, org, key.dsn, key.public_key)


async def sdk_events(gql: GraphQLClient, project: Project, **flt: Any) -> dict[str, Any]:
    data = await gql.data(SDK_EVENTS, {"orgId": project.org.id, "filter": flt}, key=project.org.key)
    return data["orgErrors"]


def run_python(
    script: str, dsn: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A script using the real sentry-sdk, in its own process (its hooks stay out of the test runner).
    Run from a file, so that the SDK finds the source lines of its frames."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "app_main.py")
        with open(path, "w") as file:
            file.write(script)
        return _run([sys.executable, path, dsn, *args], stdin)


def _run(command: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SENTRY_DSN": ""},
    )
