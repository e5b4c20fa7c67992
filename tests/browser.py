"""A real browser for tests: Debian's headless Chromium driven by Playwright (never `playwright install`).

`make test` installs Chromium when it is missing (the Makefile's tests/browser target). Tests take the
`browser` fixture and open their own pages; screenshots go to OUTPUT.

The fixture is per test, on purpose: Playwright's sync API runs an event loop in this thread while it is
open, and the async tests that follow need the thread to themselves."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).parent / "output"  # git-ignored
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[object]:
    """A persistent Chromium context on an empty, throw-away user-data dir (no JavaScript needed by
    the pages under test; callers that want it off open their own context)."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=ARGS, headless=True, java_script_enabled=False
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
