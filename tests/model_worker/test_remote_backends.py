"""Workers with remote backends forward to a real server and behave like any other worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.worker_protocol import iter_chunks
from tests.support import ServiceProcess, free_port, start_worker_process, wait_until

PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def remote_worker(
    service: Callable[..., ServiceProcess], tiny_model_dir: Path
) -> Callable[..., str]:
    """Start a worker of "remote-tiny", a model behind ``--backend-url`` (with the tiny model's
    tokenizer); returns its URL."""

    def start(*args: str) -> str:
        tokenizer = ["--tokenizer-path", str(tiny_model_dir)]
        url, _ = start_worker_process(service, "remote-tiny", *tokenizer, *args, timeout=60)
        return url

    return start


def generate(url: str, **body: object) -> dict:
    payload = {"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0, "echo": False, **body}
    response = httpx.post(f"{url}/worker_generate", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_tgi_backend_gives_the_upstream_answer(
    worker_url: str, remote_worker: Callable[..., str]
) -> None:
    remote = remote_worker("--backend", "tgi", "--backend-url", worker_url, "--no-register")
    direct, forwarded = generate(worker_url), generate(remote)
    assert forwarded["error_code"] == 0
    assert forwarded["text"] == direct["text"]
    assert forwarded["usage"] == direct["usage"]
    assert forwarded["finish_reason"] == direct["finish_reason"]
    # The context length comes from the upstream's /info.
    assert httpx.post(f"{remote}/model_details").json()["context_length"] == 256
    assert httpx.get(f"{remote}/info").json()["model_id"] == "remote-tiny"
    # Stop strings are applied upstream.
    stop = direct["text"][3:6]
    cut = generate(remote, max_new_tokens=8, stop=[stop])
    assert cut["text"] == direct["text"][: direct["text"].find(stop)]
    assert cut["finish_reason"] == "stop"


def test_tgi_backend_registers_with_the_controller(
    worker_url: str, remote_worker: Callable[..., str], controller: Callable[..., str]
) -> None:
    controller_url = controller()
    remote = remote_worker(
        "--backend",
        "tgi",
        "--backend-url",
        worker_url,
        "--controller-address",
        controller_url,
        "--heart-beat-interval",
        "0.5",
    )
    models = lambda: httpx.post(f"{controller_url}/list_models").json()["models"]  # noqa: E731
    assert wait_until(lambda: models() == ["remote-tiny"], 15)
    address = httpx.post(
        f"{controller_url}/get_worker_address", json={"model": "remote-tiny"}
    ).json()["address"]
    assert address == remote
    proxied = httpx.post(
        f"{controller_url}/worker_generate",
        json={"model": "remote-tiny", "prompt": PROMPT, "max_new_tokens": 4, "temperature": 0},
        timeout=60,
    ).json()
    assert proxied["error_code"] == 0
    assert proxied["text"].startswith(PROMPT)


def test_unreachable_backend_is_an_error_chunk(remote_worker: Callable[..., str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    remote = remote_worker(
        "--backend", "tgi", "--backend-url", dead, "--no-register", "--context-len", "512"
    )
    result = generate(remote)
    assert result["error_code"] == 50006
    assert dead in result["text"]
    assert httpx.post(f"{remote}/model_details").json()["context_length"] == 512


def test_openai_backend_gives_the_upstream_answer(
    controller: Callable[..., str],
    worker: Callable,
    tiny_model_dir: Path,
    remote_worker: Callable[..., str],
) -> None:
    # Upstream: our own controller's OpenAI API in front of a tiny-model worker.
    controller_url = controller()
    direct_url, _ = worker(tiny_model_dir, controller_url, "--model-names", "tiny")
    models = lambda: httpx.post(f"{controller_url}/list_models").json()["models"]  # noqa: E731
    assert wait_until(lambda: models() == ["tiny"], 15)
    remote = remote_worker(
        "--backend",
        "openai",
        "--backend-url",
        f"{controller_url}/v1",
        "--backend-model",
        "tiny",
        "--no-register",
        "--context-len",
        "256",
    )
    direct, forwarded = generate(direct_url), generate(remote)
    assert forwarded["error_code"] == 0
    assert forwarded["text"] == direct["text"]
    assert forwarded["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]
    assert forwarded["finish_reason"] == direct["finish_reason"]
    with httpx.stream(
        "POST",
        f"{remote}/worker_generate_stream",
        json={"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0, "echo": False},
    ) as response:
        streamed = list(iter_chunks(response.iter_bytes()))
    assert streamed[-1]["text"] == direct["text"]
    assert len(streamed) >= 2
