"""The real default model (SmolLM2-135M-Instruct) behind a real controller, end to end."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.conversation import Conversation
from shared.settings import DEFAULT_MODEL_NAME
from shared.worker_protocol import iter_chunks
from tests.support import REPO_ROOT, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(controller: Callable[..., str], worker: Callable, default_model_dir: Path) -> tuple:
    controller_url = controller()
    worker_url, _ = worker(default_model_dir, controller_url)
    listed = lambda: httpx.post(f"{controller_url}/list_models").json()["models"]  # noqa: E731
    assert wait_until(lambda: listed() == [DEFAULT_MODEL_NAME], 20)
    return controller_url, worker_url


def test_test_message_prints_a_streamed_reply_naming_paris(stack: tuple) -> None:
    controller_url, worker_url = stack
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.controller.test_message",
            "--controller-address",
            controller_url,
            "--message",
            "What is the capital of France?",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"Models: ['{DEFAULT_MODEL_NAME}']" in result.stdout
    assert f"worker_addr: {worker_url}" in result.stdout
    assert "user: What is the capital of France?" in result.stdout
    assert "Paris" in result.stdout.split("assistant: ", 1)[1]


def test_greedy_answer_through_the_controller_and_status_while_generating(stack: tuple) -> None:
    controller_url, worker_url = stack
    conv_dict = httpx.post(f"{worker_url}/worker_get_conv_template").json()["conv"]

    def chat_prompt(message: str) -> str:
        conv = Conversation.from_dict(conv_dict)
        conv.append_message(conv.roles[0], message)
        conv.append_message(conv.roles[1], None)
        return conv.get_prompt()

    body = {
        "model": DEFAULT_MODEL_NAME,
        "prompt": chat_prompt("What is the capital of France?"),
        "temperature": 0,
        "max_new_tokens": 64,
        "echo": False,
    }
    answer = httpx.post(f"{controller_url}/worker_generate", json=body, timeout=120).json()
    assert "Paris" in answer["text"]
    assert answer["finish_reason"] == "stop"

    # A long generation must not block the worker's status endpoint or its heartbeats.
    story = chat_prompt("Write a long story about a dragon who learns to paint.")
    long_body = {**body, "prompt": story, "max_new_tokens": 96}
    done = threading.Event()

    def generate() -> None:
        with httpx.stream(
            "POST", f"{controller_url}/worker_generate_stream", json=long_body, timeout=120
        ) as response:
            list(iter_chunks(response.iter_bytes()))
        done.set()

    thread = threading.Thread(target=generate)
    thread.start()
    busy = lambda: httpx.post(f"{worker_url}/worker_get_status").json()["queue_length"] >= 1  # noqa: E731
    assert wait_until(busy, 10, 0.05)
    latencies = []
    while not done.is_set():
        started = time.monotonic()
        httpx.post(f"{worker_url}/worker_get_status", timeout=5).raise_for_status()
        latencies.append(time.monotonic() - started)
        time.sleep(0.1)
    thread.join()
    assert len(latencies) >= 3
    assert max(latencies) < 1.0
    assert httpx.post(f"{controller_url}/list_models").json()["models"] == [DEFAULT_MODEL_NAME]


def test_an_overloaded_worker_answers_429_with_retry_after(
    controller: Callable[..., str], worker: Callable, default_model_dir: Path
) -> None:
    controller_url = controller()
    worker_url, _ = worker(
        default_model_dir, controller_url, "--max-batch-size", "1", "--max-queue", "0"
    )
    conv = Conversation.from_dict(
        httpx.post(f"{worker_url}/worker_get_conv_template").json()["conv"]
    )
    conv.append_message(conv.roles[0], "Write a long story about a dragon who learns to paint.")
    conv.append_message(conv.roles[1], None)
    body = {"prompt": conv.get_prompt(), "max_new_tokens": 64, "temperature": 0}
    stream = httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=body, timeout=60)
    with stream as first:
        assert first.status_code == 200
        # Keep the iterator: a discarded one is closed at once, and closing it hangs up.
        first_chunks = first.iter_bytes()
        next(first_chunks)
        refused = httpx.post(f"{worker_url}/worker_generate", json=body, timeout=60)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error_code"] == 42903
        assert "overloaded" in refused.json()["text"]
        tgi = httpx.post(f"{worker_url}/generate", json={"inputs": "Hi"}, timeout=60)
        assert tgi.status_code == 429
        assert tgi.json() == {"error": "Model is overloaded", "error_type": "overloaded"}


def test_greedy_answers_do_not_depend_on_what_else_is_batched(stack: tuple) -> None:
    _, worker_url = stack
    conv_dict = httpx.post(f"{worker_url}/worker_get_conv_template").json()["conv"]

    def body(message: str, **extra: object) -> dict:
        conv = Conversation.from_dict(conv_dict)
        conv.append_message(conv.roles[0], message)
        conv.append_message(conv.roles[1], None)
        return {
            "prompt": conv.get_prompt(),
            "max_new_tokens": 24,
            "temperature": 0,
            "echo": False,
            **extra,
        }

    questions = ["What is the capital of France?", "Name three primary colours.", "What is 2 + 2?"]
    alone = [
        httpx.post(f"{worker_url}/worker_generate", json=body(q), timeout=120).json()["text"]
        for q in questions
    ]
    noise = [
        body("Write a poem about autumn.", temperature=0.9, seed=5, max_new_tokens=48),
        body("Tell me a joke.", top_k=20, temperature=0.7, max_new_tokens=40),
    ]

    async def crowded() -> list[str]:
        async with httpx.AsyncClient(timeout=120) as client:
            results = await asyncio.gather(
                *(client.post(f"{worker_url}/worker_generate", json=b) for b in noise),
                *(client.post(f"{worker_url}/worker_generate", json=body(q)) for q in questions),
            )
        return [r.json()["text"] for r in results[len(noise) :]]

    assert asyncio.run(crowded()) == alone
    assert "Paris" in alone[0]
