"""GraphiQL served by this server: the page, its configuration, and the bundled assets.

The assets (GraphiQL, React, graphql-ws) are built from pinned npm packages (frontend/graphiql, with its
lock file) into app/web/static/graphiql and ship inside the Python package, so the IDE works on a machine
without internet access. The page carries its configuration as JSON: the endpoint, the default headers
(in development, the demo credential the server printed) and example tabs (a query, a mutation, a
subscription).
"""

from __future__ import annotations

import hashlib
import html
import json
from functools import cache
from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "static" / "graphiql"
ASSETS_PATH = "/graphiql/assets"

EXAMPLE_QUERY = """# Recent errors of an organization and the live status, in one request.
query RecentErrors {
  orgErrors(orgId: ORG_ID, first: 5) {
    totalCount
    nodes { id message severity timestamp }
  }
  serviceStatus { status }
}
"""

EXAMPLE_MUTATION = """# Record an error event (spends the write budget).
mutation LogError {
  logError(
    orgId: ORG_ID
    error: {message: "Checkout failed: card declined", severity: HIGH, source: "graphiql"}
  ) {
    errorId
    error { id message severity timestamp }
  }
}
"""

EXAMPLE_SUBSCRIPTION = """# The current status at once, then every change (over graphql-ws).
subscription StatusChanges {
  serviceStatusChanged {
    status
    timestamp
    services { name status }
  }
}
"""


@cache
def asset_version() -> str:
    """A short digest of the bundle, appended to asset URLs so a rebuilt bundle is never read stale."""
    digest = hashlib.sha256()
    for name in ("graphiql.js", "graphiql.css"):
        path = ASSETS_DIR / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


def page_config(endpoint: str, api_key: str | None, org_id: str | None) -> dict[str, object]:
    headers = json.dumps({"X-API-KEY": api_key}, indent=2) if api_key else None
    org = json.dumps(org_id or "your-org-id")  # a GraphQL string literal
    tabs = [
        {"query": EXAMPLE_QUERY.replace("ORG_ID", org), "headers": headers},
        {"query": EXAMPLE_MUTATION.replace("ORG_ID", org), "headers": headers},
        {"query": EXAMPLE_SUBSCRIPTION, "headers": headers},
    ]
    return {"endpoint": endpoint, "headers": headers, "tabs": tabs}


def render_page(endpoint: str, api_key: str | None, org_id: str | None) -> str:
    config = json.dumps(page_config(endpoint, api_key, org_id))
    # Inside <script>, only "</" could end the element early.
    config = config.replace("</", "<\\/")
    version = html.escape(asset_version())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GraphiQL · error-tracker</title>
<link rel="stylesheet" href="{ASSETS_PATH}/graphiql.css?v={version}">
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script id="graphiql-config" type="application/json">{config}</script>
<script type="module" src="{ASSETS_PATH}/graphiql.js?v={version}"></script>
</body>
</html>
"""
