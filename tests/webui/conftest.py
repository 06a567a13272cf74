"""One serving stack for the web UI's tests: real controller and tiny worker processes on a real
Redis.

Package scope because a worker takes seconds to start; tests only add workers of their own
names, so they do not disturb each other. The browser tests start their own, fuller stack.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ProcessGroup, free_port, own_key_prefix, wait_listed
from tests.webui.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Shots
from tests.webui.stack import MODEL, Stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can react to a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="package")
def stack(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("webui-stack")
    with (
        own_key_prefix(redis_url) as prefix,
        own_key_prefix(redis_url) as empty_prefix,
        ProcessGroup(logs, {"REDIS_URL": redis_url}) as group,
    ):
        controller = group.start_controller(env={"REDIS_KEY_PREFIX": prefix})
        empty = group.start_controller("empty-controller", env={"REDIS_KEY_PREFIX": empty_prefix})
        worker = group.start_model_worker("worker", tiny_model_dir, MODEL, controller)
        wait_listed(controller, MODEL)
        yield Stack(controller, worker, MODEL, empty, logs)


@pytest.fixture
def mute_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a hung worker."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def dead_address() -> str:
    """An address where nothing listens: a crashed worker."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright, one per browser-test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh page; a failed test leaves its screenshot in test-artifacts/webui/."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.shots = Shots(tmp_path / "screenshots", request.node.name)
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            page.shots.take(page, "failed")
        context.close()
