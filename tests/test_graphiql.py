"""GraphiQL served by this server (no CDN), opened in a real browser."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ulid import ULID

from app.runtime.settings import Settings
from tests.browser import BrowserPage, browser_page  # noqa: F401  (the fixture)
from tests.conftest import LiveServer, _free_port, start_server
from tests.documents import SET_SERVICE_STATUS


@pytest.fixture(scope="module")
def demo_server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A development server with demo data: GraphiQL opens with the demo credential."""
    settings = Settings(
        mongodb_uri=mongo_uri,
        mongodb_db=f"test_{str(ULID()).lower()}",
        port=_free_port(),
        data_dir=tmp_path_factory.mktemp("demo-data"),
        status_probe_interval_seconds=60,
        feed_mode="poll",
        retention_days=24000,
        _env_file=None,  # type: ignore[call-arg]
    )
    live, stop = start_server(settings)
    try:
        yield live
    finally:
        stop()


# The text of GraphiQL's editors (CodeMirror 5 keeps its instance on the wrapper element).
RESULT_JS = "document.querySelector('.result-window .CodeMirror')?.CodeMirror.getValue() ?? ''"
HEADERS_JS = (
    "document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror')"
    "?.CodeMirror.getValue() ?? ''"
)


def _config(page: str) -> dict[str, object]:
    match = re.search(r'<script id="graphiql-config" type="application/json">(.*?)</script>', page, re.S)
    assert match, page
    return json.loads(match.group(1).replace("<\\/", "</"))


async def test_page_and_assets_come_from_this_server(demo_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=demo_server.url) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/graphiql/assets/") for s in sources), sources
        for source in sources:
            asset = await client.get(source)
            assert asset.status_code == 200 and len(asset.content) > 10_000, source
        config = _config(page.text)
        demo_key = demo_server.app.state.runtime.demo_key
        assert demo_key and json.loads(str(config["headers"])) == {"X-API-KEY": demo_key}
        tabs = config["tabs"]
        assert isinstance(tabs, list)
        kinds = [str(tab["query"]).split("\n")[1].split()[0] for tab in tabs]
        assert kinds == ["query", "mutation", "subscription"]


async def test_graphiql_without_demo_data_opens_without_a_key(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
    config = _config(page.text)
    assert config["headers"] is None and "X-API-KEY" not in page.text


async def test_graphiql_runs_a_query_and_a_subscription_in_chromium(
    demo_server: LiveServer,
    browser_page: BrowserPage,  # noqa: F811
) -> None:
    page = browser_page.page
    await page.goto(f"{demo_server.url}/graphql")  # type: ignore[attr-defined]
    await page.wait_for_selector(".graphiql-container .CodeMirror", timeout=30_000)  # type: ignore[attr-defined]

    async def result_text() -> str:
        return await page.evaluate(f"() => {RESULT_JS}")  # type: ignore[attr-defined,no-any-return]

    async def wait_for_result(*needles: str) -> str:
        # Polled by the browser: resolves as soon as the result pane holds every needle.
        try:
            await page.wait_for_function(  # type: ignore[attr-defined]
                f"needles => {{ const text = {RESULT_JS}; return needles.every(n => text.includes(n)); }}",
                arg=list(needles),
                timeout=30_000,
            )
        except Exception:
            await browser_page.screenshot("graphiql-failure")
            raise AssertionError(f"{needles} never shown; the result pane: {await result_text()}") from None
        return await result_text()

    # The first tab: the example query, with the demo key already in the Headers tab.
    headers = await page.evaluate(f"() => {HEADERS_JS}")  # type: ignore[attr-defined]
    assert demo_server.app.state.runtime.demo_key in headers
    await page.click(".graphiql-execute-button")  # type: ignore[attr-defined]
    text = await wait_for_result('"totalCount"', '"serviceStatus"')
    body = json.loads(text)
    assert "errors" not in body and body["data"]["orgErrors"]["totalCount"] >= 1

    # The third tab: the subscription, over graphql-ws.
    await page.locator(".graphiql-tab-button").nth(2).click()  # type: ignore[attr-defined]
    await page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('.graphiql-query-editor .CodeMirror')"
        "?.CodeMirror.getValue().includes('subscription StatusChanges')"
    )
    await page.click(".graphiql-execute-button")  # type: ignore[attr-defined]
    await wait_for_result('"serviceStatusChanged"', '"OPERATIONAL"')

    admin = demo_server.call(lambda s: s.auth.create_key(org_id=None, admin=True, name="browser")).plaintext
    description = f"browser test {ULID()}"
    async with httpx.AsyncClient(base_url=demo_server.url) as client:
        response = await client.post(
            "/graphql",
            json={
                "query": SET_SERVICE_STATUS,
                "variables": {"service": "api", "status": "DEGRADED_PERFORMANCE", "description": description},
            },
            headers={"X-API-KEY": admin},
        )
        assert response.status_code == 200 and "errors" not in response.json(), response.text
    try:
        text = await wait_for_result('"DEGRADED_PERFORMANCE"')
        assert json.loads(text)["data"]["serviceStatusChanged"]["status"] == "DEGRADED_PERFORMANCE"
        shot = await browser_page.screenshot("graphiql-subscription")
        assert shot.stat().st_size > 10_000
    finally:
        async with httpx.AsyncClient(base_url=demo_server.url) as client:
            await client.post(
                "/graphql",
                json={"query": SET_SERVICE_STATUS, "variables": {"service": "api", "status": "OPERATIONAL"}},
                headers={"X-API-KEY": admin},
            )
    assert browser_page.external_requests == []


def test_the_bundle_ships_with_the_package() -> None:
    from app.web import graphiql

    assert (graphiql.ASSETS_DIR / "graphiql.js").stat().st_size > 100_000
    assert Path(graphiql.__file__).parent / "static" / "graphiql" == graphiql.ASSETS_DIR
