"""A real browser for the tests: Debian's headless Chromium driven by Playwright.

Playwright never downloads a browser here (`playwright install` needs the internet): it launches the
system Chromium (`make test` installs the `chromium` package when missing) with a fresh, empty profile.
Where no Chromium is installed, the browser tests are skipped with a message saying so.

Use the `browser_page` fixture (a Playwright Page); `external_requests` lists every request the page
made to a host other than the test server's (each is refused: the pages must work offline).
Screenshots go to tests/output/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

OUTPUT_DIR = Path(__file__).parent / "output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    candidate = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return candidate if Path(candidate).exists() else None


@dataclass
class BrowserPage:
    page: object  # playwright.async_api.Page
    external_requests: list[str] = field(default_factory=list)

    async def screenshot(self, name: str) -> Path:
        OUTPUT_DIR.mkdir(exist_ok=True)
        path = OUTPUT_DIR / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path


@pytest.fixture
async def browser_page(tmp_path: Path) -> AsyncIterator[BrowserPage]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium installed (`make test` runs apt-get install chromium): browser test skipped")
    async_api = pytest.importorskip("playwright.async_api")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    async with async_api.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            result = BrowserPage(page)

            async def local_only(route: object) -> None:
                url = route.request.url  # type: ignore[attr-defined]
                host = urlsplit(url).hostname
                if host in ("127.0.0.1", "localhost") or url.startswith(("data:", "blob:")):
                    await route.continue_()  # type: ignore[attr-defined]
                else:
                    result.external_requests.append(url)
                    await route.abort()  # type: ignore[attr-defined]

            await context.route("**/*", local_only)
            yield result
        finally:
            await context.close()
