"""The web chat's options in headless Chromium, reached through the gateway (nginx): users' text
shown as typed and never as HTML, replies as Markdown, ``--moderate`` against a real moderation
server, ``--share`` without a reachable tunnel, and the Training page's empty loss curve.

The worker is a stand-in whose reply is known Markdown; the rest are real processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from services.gateway.config import find_nginx
from shared.constants import MODERATION_MSG
from tests.controller.stand_in import StandInWorker, one_snapshot
from tests.support import ProcessGroup, free_port, own_key_prefix, service_env, wait_until
from tests.webui.browser import open_chat, requires_browser
from tests.webui.moderation_server import ModerationServer, moderation_server
from tests.webui.stack import start_webui

pytestmark = [
    pytest.mark.browser,
    requires_browser,
    pytest.mark.skipif(find_nginx() is None, reason="nginx is missing (apt-get install nginx)"),
]

MODEL = "markdown-model"
REPLY = "Here is **bold** text and `code`.\n\n| a | b |\n|---|---|\n| 1 | 2 |"
# Would run scripts, load an image or format text if the page took the user's text as HTML or
# Markdown.
HOSTILE = (
    "**not bold** <img src=x onerror=\"window.__pwned='img'\"> <b>tag</b> "
    "<script>window.__pwned='script'</script> </pre><i>out</i>"
)


@dataclass
class OptionsStack:
    gateway: str
    worker: StandInWorker
    moderation: ModerationServer
    processes: ProcessGroup


@pytest.fixture(scope="module")
def options_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("webui-options")
    with (
        own_key_prefix(redis_url) as prefix,
        moderation_server() as moderation,
        ProcessGroup(root, service_env(redis_url, prefix, root)) as group,
    ):
        controller = group.start_controller()
        worker = StandInWorker([MODEL], lambda: one_snapshot(REPLY)).start().join(controller)
        try:
            # --share towards a tunnel server that is not there: the page must still come up.
            share = ["--share", "--share-server-address", f"127.0.0.1:{free_port()}"]
            moderate = ["--moderate", "--moderation-base-url", moderation.base_url]
            webui = start_webui(group, controller, root / "conv-logs", *share, *moderate)
            port = free_port()
            gateway_args = ["--port", str(port), "--webui-url", webui, "--api-url", controller]
            group.start("gateway", "services.gateway", *gateway_args)
            gateway = f"http://127.0.0.1:{port}"
            group.processes["gateway"].wait_http(f"{gateway}/gateway-health", timeout=30)
            yield OptionsStack(gateway, worker, moderation, group)
        finally:
            worker.stop()


def _open(page: Any, url: str) -> None:
    open_chat(page, url, MODEL)


def _send(page: Any, text: str) -> None:
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")


def test_through_the_gateway_user_text_is_shown_as_typed_and_replies_as_markdown(
    page: Any, options_stack: OptionsStack
) -> None:
    _open(page, options_stack.gateway)
    _send(page, HOSTILE)
    page.wait_for_function("() => !document.querySelector('#upvote').disabled")
    page.shots.take(page, "chat")

    user = page.locator('#chatbot [data-testid="user"]').last
    assert user.inner_text().strip() == HOSTILE
    assert user.locator("img, b, i, script, strong, em").count() == 0
    assert page.evaluate("window.__pwned") is None
    bot = page.locator('#chatbot [data-testid="bot"]').last
    assert bot.locator("strong").inner_text() == "bold"
    assert bot.locator("code").first.inner_text() == "code"
    assert bot.locator("table td").all_inner_texts() == ["1", "2"]
    # The worker got the text as typed.
    assert HOSTILE in options_stack.worker.prompts[-1]


def test_a_flagged_message_is_not_sent_and_the_moderation_message_shows(
    page: Any, options_stack: OptionsStack
) -> None:
    _open(page, options_stack.gateway)
    calls = options_stack.worker.calls
    _send(page, "something forbidden")
    page.wait_for_function(
        "(msg) => document.querySelector('#chat-input textarea').value === msg",
        arg=MODERATION_MSG,
    )
    page.shots.take(page, "moderated")
    assert MODERATION_MSG in page.locator('#chatbot [data-testid="bot"]').last.inner_text()
    assert "something forbidden" in options_stack.moderation.inputs()
    assert options_stack.worker.calls == calls


def test_share_without_a_tunnel_says_so_and_the_page_is_served(
    options_stack: OptionsStack,
) -> None:
    webui = options_stack.processes.processes["webui"]
    assert wait_until(lambda: "event=share_unavailable" in webui.logs(), 30)
    line = next(x for x in webui.logs().splitlines() if "event=share_unavailable" in x)
    assert "cannot be reached" in line and "no public link" in line
    assert webui.proc is not None and webui.proc.poll() is None


def test_the_empty_loss_curve_has_no_infinite_legend(
    page: Any, options_stack: OptionsStack
) -> None:
    _open(page, options_stack.gateway)
    page.get_by_role("tab", name="Training").click()
    curve = page.locator("#loss-curve")
    curve.wait_for()
    page.wait_for_timeout(1000)  # let the plot draw (nothing to wait on for "no legend")
    page.shots.take(page, "training")
    # What is drawn: no legend entry, tick or title reads Infinity. (Vega still describes the
    # empty y axis to screen readers as "values from Infinity to -Infinity".)
    assert "Infinity" not in curve.inner_text()
    drawn = curve.locator("svg text").all_text_contents()
    assert not [text for text in drawn if "Infinity" in text], drawn
