"""Helpers of the browser tests: the headless Chromium, screenshots, and Gradio page handles."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# A page action's default wait; a cold Gradio page on a busy 2-core machine gets three of them.
TIMEOUT_MS = 30_000
# Kept by CI (gitignored).
ARTIFACTS = REPO_ROOT / "test-artifacts" / "webui"
# Headless flags that work on the project's machines (no GPU, no network, no sandbox as root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; no browser download needed)"
    return None


requires_browser = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


class Shots:
    """Screenshots into the test's tmp folder, copied to test-artifacts/webui/ for CI."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, page, name: str) -> Path:  # page: playwright.sync_api.Page
        path = self.folder / f"{self.prefix}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, ARTIFACTS / path.name)
        return path


def open_chat(page, url: str, model: str) -> None:  # page: playwright.sync_api.Page
    """Load the page and wait until the page-load event has picked the model."""
    page.goto(url)
    page.locator("#chat-input textarea").wait_for(timeout=3 * TIMEOUT_MS)
    page.wait_for_function(
        "(name) => document.querySelector('#model-select input').value === name",
        arg=model,
        timeout=3 * TIMEOUT_MS,
    )
