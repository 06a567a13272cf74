"""The web UI in headless Chromium against real processes on loopback: controller, tiny model
worker, trainer, model pool and the ``python -m services.webui`` process.

One stack per module (processes take seconds to start); each test opens its own page.
Screenshots go to the test's tmp folder and to test-artifacts/webui/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    REPO_ROOT,
    ProcessGroup,
    free_port,
    own_key_prefix,
    register_worker,
    service_env,
    wait_until,
    write_conversations,
)
from tests.webui.browser import TIMEOUT_MS, open_chat, requires_browser
from tests.webui.stack import MODEL, start_webui

pytestmark = [pytest.mark.browser, requires_browser]

# Registered without a live worker: listed, preselectable, and unreachable.
LISTED_ONLY = "zz-listed-only"
HAS_POOL = (REPO_ROOT / "services" / "model_pool" / "__main__.py").exists()


@dataclass
class BrowserStack:
    controller: str
    webui: str
    conv_logs: Path
    data_file: Path
    logs: Path
    processes: ProcessGroup

    def log_lines(self) -> list[dict[str, Any]]:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        path = self.conv_logs / f"{day}-conv.json"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start_pool(group: ProcessGroup, controller: str) -> None:
    """The model pool, with room for one deployed model."""
    model_port = free_port()
    args = ["--port", str(free_port()), "--controller-address", controller]
    args += ["--port-range", f"{model_port}-{model_port}"]
    group.start("pool", "services.model_pool", *args)


@pytest.fixture(scope="module")
def browser_stack(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserStack]:
    root = tmp_path_factory.mktemp("webui-browser")
    with own_key_prefix(redis_url) as prefix:
        env = {
            **service_env(redis_url, prefix, root),
            "CELERY_VISIBILITY_TIMEOUT": "30",
            "WEBUI_REFRESH_SECONDS": "0.5",
            "WEBUI_BASE_MODELS": str(tiny_model_dir),
        }
        with ProcessGroup(root, env) as group:
            controller = group.start_controller()
            # Every process starts before the first is waited for: they load at the same time.
            worker = group.start_model_worker(
                "worker", tiny_model_dir, MODEL, controller, wait=False
            )
            group.start("trainer", "services.trainer", "--gpus", "0")
            if HAS_POOL:
                _start_pool(group, controller)
            webui = start_webui(group, controller, root / "conv-logs", wait=False)
            group.processes["worker"].wait_http(f"{worker}/health", timeout=120)
            register_worker(controller, f"http://127.0.0.1:{free_port()}", LISTED_ONLY)
            group.processes["webui"].wait_http(f"{webui}/", timeout=120)
            data_file = write_conversations(root / "train.jsonl")
            yield BrowserStack(controller, webui, root / "conv-logs", data_file, root, group)


def _open(page: Any, url: str, model: str = MODEL) -> None:
    open_chat(page, url, model)


def _wait_text(page: Any, selector: str, text: str, timeout: float = TIMEOUT_MS) -> str:
    """Wait until the element's visible text contains ``text``; returns that text.

    Gradio tables keep hidden copies of their cells, so text locators match twice.
    """
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
        arg=[selector, text],
        timeout=timeout,
    )
    return page.locator(selector).inner_text()


def _bot_messages(page: Any) -> Any:
    return page.locator('#chatbot [data-testid="bot"]')


def _enabled(page: Any, elem_id: str) -> bool:
    return page.locator(f"#{elem_id}").is_enabled()


def _set_max_tokens(page: Any, value: int) -> None:
    """Open the parameters and set the slider's number box, until the value sticks.

    The slider mounts when the accordion opens; a value typed while it mounts can be reset to
    the default (seen on a loaded CI machine), so check it after a moment and type it again.
    """
    page.get_by_text("Parameters").click()
    box = page.locator("#max-tokens input[type=number]")
    box.wait_for()
    stuck = 0
    for _ in range(20):
        if box.input_value() != str(value):
            stuck = 0
            box.fill(str(value))
            box.press("Enter")
        else:
            stuck += 1
            if stuck == 2:  # still there half a second later
                return
        page.wait_for_timeout(250)
    raise AssertionError(f"max tokens stayed at {box.input_value()}, not {value}")


def _watch_chatbot(page: Any) -> None:
    """Record every text the last bot message shows, to prove the reply streamed."""
    page.evaluate(
        """() => {
        window.__seen = [];
        const chat = document.querySelector('#chatbot');
        new MutationObserver(() => {
            const bots = chat.querySelectorAll('[data-testid="bot"]');
            if (bots.length) window.__seen.push(bots[bots.length - 1].innerText);
        }).observe(chat, {subtree: true, childList: true, characterData: true});
    }"""
    )


def _send(page: Any, text: str) -> None:
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")


def test_chat_streams_regenerates_and_votes(page: Any, browser_stack: BrowserStack) -> None:
    _open(page, browser_stack.webui)
    assert not _enabled(page, "upvote") and not _enabled(page, "regenerate")
    _set_max_tokens(page, 48)
    _watch_chatbot(page)

    _send(page, "Hello there")
    page.wait_for_function("() => !document.querySelector('#upvote').disabled")
    seen = page.evaluate("window.__seen")
    page.shots.take(page, "1-replied")
    assert any("▌" in text for text in seen), "the reply should stream behind a cursor"
    assert _bot_messages(page).count() == 1
    reply = _bot_messages(page).first.inner_text()
    assert reply.strip() and "▌" not in reply
    assert page.locator("#chat-input textarea").input_value() == ""
    [chat] = [r for r in browser_stack.log_lines() if r["type"] == "chat"]
    assert chat["model"] == MODEL and chat["gen_params"]["max_new_tokens"] == 48
    assert chat["finish"] >= chat["start"] and chat["ip"] == "127.0.0.1"
    conv_id = chat["state"]["conv_id"]

    page.locator("#regenerate").click()
    page.wait_for_function("() => document.querySelector('#upvote').disabled")
    page.wait_for_function("() => !document.querySelector('#upvote').disabled")
    page.shots.take(page, "2-regenerated")
    assert _bot_messages(page).count() == 1
    chats = [r for r in browser_stack.log_lines() if r["type"] == "chat"]
    assert len(chats) == 2 and chats[1]["state"]["conv_id"] == conv_id
    messages = chats[1]["state"]["messages"][chats[1]["state"]["offset"] :]
    assert [m[1] for m in messages][:1] == ["Hello there"] and len(messages) == 2

    page.locator("#upvote").click()
    assert wait_until(
        lambda: any(r["type"] == "upvote" for r in browser_stack.log_lines()), 10, 0.2
    )
    page.wait_for_function("() => document.querySelector('#upvote').disabled")
    page.shots.take(page, "3-upvoted")
    [vote] = [r for r in browser_stack.log_lines() if r["type"] == "upvote"]
    assert vote["model"] == MODEL and vote["state"]["conv_id"] == conv_id
    assert _enabled(page, "regenerate") and _enabled(page, "clear")

    page.locator("#clear").click()
    page.wait_for_function("() => document.querySelector('#clear').disabled")
    assert _bot_messages(page).count() == 0


def test_a_model_list_refresh_keeps_the_conversation(
    page: Any, browser_stack: BrowserStack
) -> None:
    """The dropdown is refreshed every few seconds; only the user's own switch clears."""
    _open(page, browser_stack.webui)
    _set_max_tokens(page, 8)
    _send(page, "Hello again")
    page.wait_for_function("() => !document.querySelector('#upvote').disabled")
    page.wait_for_timeout(6_000)  # past the first tick of the model-list timer (5 s)
    assert _bot_messages(page).count() == 1
    assert "Hello again" in page.locator("#chatbot").inner_text()


def test_model_without_worker_is_named_in_plain_words(
    page: Any, browser_stack: BrowserStack
) -> None:
    _open(page, f"{browser_stack.webui}/?model={LISTED_ONLY}", LISTED_ONLY)
    _send(page, "anyone there?")
    bot = _bot_messages(page).last
    bot.get_by_text("could not be reached").wait_for()
    page.shots.take(page, "unreachable-worker")
    assert f"serving '{LISTED_ONLY}'" in bot.inner_text()

    dropdown = page.locator("#model-select input")
    dropdown.fill("ghost")
    dropdown.press("Enter")
    # Switching the model clears the conversation (and the textbox): wait for it to be done.
    page.wait_for_function("() => !document.querySelector('#chatbot [data-testid=\"bot\"]')")
    _send(page, "hello ghost")
    page.get_by_text("No worker is serving model 'ghost' right now").wait_for()
    page.shots.take(page, "no-worker")
    assert "HIGH TRAFFIC" not in page.locator("#chatbot").inner_text()
    # The text stays in the box, to be sent again once a worker is up.
    assert page.locator("#chat-input textarea").input_value() == "hello ghost"
    assert _enabled(page, "regenerate") and not _enabled(page, "upvote")


def test_models_page_lists_workers_live(page: Any, browser_stack: BrowserStack) -> None:
    _open(page, browser_stack.webui)
    page.get_by_role("tab", name="Models").click()
    _wait_text(page, "#workers", "healthy")
    text = _wait_text(page, "#workers", "unreachable")
    page.shots.take(page, "models")
    assert MODEL in text and "healthy (heartbeat" in text
    assert LISTED_ONLY in text and "Connection refused" in text


def test_dataset_upload_starts_an_ingestion(page: Any, browser_stack: BrowserStack) -> None:
    _open(page, browser_stack.webui)
    page.get_by_role("tab", name="Training").click()
    page.locator("#dataset-upload input[type=file]").set_input_files(str(browser_stack.data_file))
    page.locator("#dataset-upload").get_by_text("train.jsonl").first.wait_for()
    page.locator("#start-ingestion").click()
    dataset_id = _wait_text(page, "#ingest-status", "queued").split()[1]
    assert dataset_id.startswith("ds-")
    _wait_text(page, "#datasets", dataset_id)
    manifest = _wait_text(page, "#manifest", dataset_id)
    assert "queued" in manifest and "train.jsonl" in manifest
    page.shots.take(page, "dataset-queued")
    record = httpx.get(f"{browser_stack.controller}/v1/datasets/{dataset_id}").json()
    assert record["spec"]["sources"][0].endswith("uploads/train.jsonl")


def _submit_job(page: Any, data_file: Path, *, method: str, steps: int, suffix: str) -> str:
    page.get_by_role("tab", name="Training").click()
    training_file = page.locator("#training-file input")
    training_file.fill(str(data_file))
    training_file.press("Enter")
    page.get_by_label(method, exact=True).check()
    for label, value in (
        ("Max length", "128"),
        ("Batch size", "2"),
        ("Max steps (0: all epochs)", str(steps)),
        ("Learning rate (0: method default)", "0.001"),
        ("Epochs", "1"),
    ):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_label("Name suffix of the result").fill(suffix)
    page.locator("#start-job").click()
    text = _wait_text(page, "#job-submit-status", "queued")
    job_id = text.split()[2]
    assert job_id.startswith("ftjob-"), text
    return job_id


def _progress(page: Any) -> tuple[str, float]:
    bar = page.locator("#job-progress .job-progress")
    return bar.get_attribute("data-status") or "", float(bar.get_attribute("data-fraction") or 0)


def test_training_job_progress_moves_to_done(page: Any, browser_stack: BrowserStack) -> None:
    _open(page, browser_stack.webui)
    job_id = _submit_job(page, browser_stack.data_file, method="lora", steps=150, suffix="browser")
    page.locator("#job-pick input").wait_for()
    seen: list[tuple[str, float]] = []
    shot_running = False

    def done() -> bool:
        nonlocal shot_running
        seen.append(_progress(page))
        if seen[-1][0] == "running" and seen[-1][1] > 0 and not shot_running:
            page.shots.take(page, "1-running")
            shot_running = True
        return seen[-1][0] in ("succeeded", "failed", "cancelled")

    assert wait_until(done, 180, 0.1), seen[-5:]
    page.locator("#loss-curve canvas, #loss-curve svg").first.wait_for()
    page.shots.take(page, "2-done")
    assert seen[-1] == ("succeeded", 1.0), page.locator("#job-summary").inner_text()
    fractions = [f for status, f in seen if status == "running"]
    assert any(0 < f < 1 for f in fractions), f"progress never moved: {sorted(set(seen))}"
    assert fractions == sorted(fractions), "progress should only move forward"
    assert "tiny-llama-browser" in page.locator("#job-summary").inner_text()
    job = httpx.get(f"{browser_stack.controller}/v1/fine_tuning/jobs/{job_id}").json()
    assert job["status"] == "succeeded"


@pytest.mark.skipif(not HAS_POOL, reason="services/model_pool (the model pool) is absent")
def test_deploy_a_trained_model_and_chat_with_it(page: Any, browser_stack: BrowserStack) -> None:
    _open(page, browser_stack.webui)
    # A full finetune's result is a whole model: deployable without a merge step.
    _submit_job(page, browser_stack.data_file, method="full", steps=4, suffix="deployed")
    assert wait_until(lambda: _progress(page)[0] in ("succeeded", "failed"), 180, 0.2)
    assert _progress(page)[0] == "succeeded", page.locator("#job-summary").inner_text()
    page.locator("#deploy-job").click()
    _wait_text(page, "#deployment-status", "deployed on", timeout=120_000)
    page.shots.take(page, "1-deployed")

    name = "tiny-llama-deployed"
    page.get_by_role("tab", name="Chat").click()
    # The chat's model list refreshes by itself: the new model joins the dropdown.
    page.locator("#model-select input").click()
    page.get_by_role("option", name=name).wait_for(timeout=20_000)
    page.get_by_role("option", name=name).click()
    assert page.locator("#model-select input").input_value() == name
    _set_max_tokens(page, 32)
    _send(page, "What is the capital of France?")
    page.wait_for_function("() => !document.querySelector('#upvote').disabled")
    page.shots.take(page, "2-chat")
    assert _bot_messages(page).first.inner_text().strip()
    assert any(r["type"] == "chat" and r["model"] == name for r in browser_stack.log_lines())


@pytest.fixture(scope="module")
def keyed_webui(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A stack with keys, as `make up` runs it: controller, tiny worker and web UI share the
    users' key and the worker token; the web UI sends its own key. Returns (web UI, user key)."""
    root = tmp_path_factory.mktemp("webui-keyed")
    user_key, token = "browser-user-key", "browser-worker-token"
    with own_key_prefix(redis_url) as prefix:
        env = {
            **service_env(redis_url, prefix, root),
            "CONTROLLER_API_KEYS": user_key,
            "WORKER_TOKEN": token,
            "WEBUI_API_KEY": user_key,
            "ALLOW_UNAUTHENTICATED": "false",
        }
        with ProcessGroup(root, env) as group:
            controller = group.start_controller()
            group.start_model_worker("worker", tiny_model_dir, MODEL, controller)
            webui = start_webui(group, controller, root / "conv-logs")
            yield webui, user_key


def test_with_keys_the_page_asks_for_a_login_and_the_key_opens_the_chat(
    page: Any, keyed_webui: tuple[str, str]
) -> None:
    webui, user_key = keyed_webui
    page.goto(webui)
    password = page.locator("input[type=password]")
    password.wait_for()
    assert page.locator("#chat-input").count() == 0
    page.shots.take(page, "1-login")

    def sign_in(key: str) -> None:
        page.locator("input[type=text]").first.fill("ann")
        password.fill(key)
        page.get_by_role("button", name="Login").click()

    sign_in("not-a-key")
    page.get_by_text("Incorrect", exact=False).wait_for()
    assert page.locator("#chat-input").count() == 0

    sign_in(user_key)
    page.locator("#chat-input textarea").wait_for()
    _open(page, webui)
    _set_max_tokens(page, 8)
    _send(page, "Hello behind the login")
    page.wait_for_function("() => !document.querySelector('#upvote').disabled")
    page.shots.take(page, "2-signed-in-chat")
    reply = _bot_messages(page).first.inner_text()
    assert reply.strip() and "could not" not in reply and "refused" not in reply
