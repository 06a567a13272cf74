"""Helpers of the browser tests: the headless Chromium, screenshots, and Gradio page handles."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
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
