"""FastChat 0.2.36's real processes with ours, in both directions.

- FastChat's ``openai_api_server`` pointed at our controller serves our worker's model, and builds
  the very prompt our controller's ``/v1/chat/completions`` builds (SmolLM2's chat template);
- FastChat's ``model_worker`` registered with our controller (trusted by its network, no token)
  serves ``/v1/chat/completions`` and the web chat's client, with FastChat's own template.
A recording proxy sits in front of each worker, which registers under the proxy's address, so the
test reads the exact prompts each side sent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.webui.controller_client import ControllerClient
from tests.fastchat.recording_proxy import RecordingProxy
from tests.fastchat.test_templates import CHATS, SMOLLM2_TEMPLATE
from tests.support import free_port, wait_until


class FastChatProcess:
    """``<FastChat's python> -m fastchat.serve.<module>`` on a free port, logging to a file."""

    def __init__(
        self, python: Path, module: str, args: list[str], log: Path, env: dict[str, str]
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [str(python), "-m", f"fastchat.serve.{module}", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), *args]
        with log.open("wb") as out:
            # FastChat writes its logs to the working folder: keep them out of the checkout.
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, env=env
            )

    def wait(self, ready: Callable[[], bool], timeout: float = 180) -> None:
        def check() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"FastChat exited:\n{self.log.read_text()[-3000:]}")
            try:
                return ready()
            except httpx.HTTPError:
                return False

        assert wait_until(check, timeout, 0.5), self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def fastchat(fastchat_python: Path, tmp_path: Path) -> Iterator[Callable[..., FastChatProcess]]:
    started: list[FastChatProcess] = []

    def start(module: str, *args: str) -> FastChatProcess:
        log = tmp_path / f"fastchat-{module}-{len(started)}.log"
        # Our controller drops a worker 2.5 s (here 3 s) after its last heartbeat; FastChat's
        # workers beat every 45 s unless told otherwise.
        env = {**os.environ, "FASTCHAT_WORKER_HEART_BEAT_INTERVAL": "1"}
        started.append(FastChatProcess(fastchat_python, module, list(args), log, env))
        return started[-1]

    yield start
    for proc in reversed(started):
        proc.stop()


def with_template(tiny_model_dir: Path, folder: Path, template: str) -> Path:
    """The tiny model, prompted by ``template`` (its tokenizer's chat template)."""
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").write_text(template)
    return folder


def for_transformers4(tiny_model_dir: Path, folder: Path) -> Path:
    """The tiny model as FastChat's transformers 4 loads it: transformers 5 names the fast
    tokenizer's class ``TokenizersBackend``, which 4.x does not know."""
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def chat(url: str, model: str, messages: list[dict], key: str = "") -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": messages, "max_tokens": 4, "temperature": 0}
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120)
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["choices"][0]["message"]["role"] == "assistant"
    return reply


def listed(url: str, model: str) -> Callable[[], bool]:
    def check() -> bool:
        answer = httpx.post(f"{url}/list_models", timeout=5).json()
        return model in answer.get("models", [])

    return check


def test_fastchat_openai_server_serves_our_worker_with_our_prompts(
    controller, service, fastchat, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    model_dir = with_template(tiny_model_dir, tmp_path / "smol-tiny", SMOLLM2_TEMPLATE)
    url = controller()
    worker_port = free_port()
    worker_url = f"http://127.0.0.1:{worker_port}"
    with RecordingProxy(worker_url) as proxy:
        args = ["--port", str(worker_port), "--model-path", str(model_dir)]
        args += ["--controller-address", url, "--heart-beat-interval", "0.5"]
        ours_worker = service("services.model_worker", *args, "--worker-address", proxy.url)
        ours_worker.wait_http(f"{worker_url}/health", timeout=120)
        server = fastchat("openai_api_server", "--controller-address", url)
        server.wait(lambda: "smol-tiny" in httpx.get(f"{server.url}/v1/models").text)
        conv = httpx.post(f"{worker_url}/worker_get_conv_template", timeout=10).json()["conv"]
        assert conv["sep_style"] == 9 and conv["name"] == "chatml" and conv["fastchat_exact"]
        for messages in CHATS[:2]:
            chat(server.url, "smol-tiny", messages)
            chat(url, "smol-tiny", messages)
        theirs_first, ours_first, theirs_second, ours_second = proxy.prompts()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for theirs, ours, messages in [
        (theirs_first, ours_first, CHATS[0]),
        (theirs_second, ours_second, CHATS[1]),
    ]:
        assert theirs == ours
        expected = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        assert ours == expected
    assert ours_first.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_fastchat_worker_serves_through_our_controller(
    controller, fastchat, fastchat_python: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = for_transformers4(tiny_model_dir, tmp_path / "fc-llama")
    keys = {"CONTROLLER_API_KEYS": "user-key", "WORKER_TOKEN": "worker-token"}
    env = {**keys, "ALLOW_UNAUTHENTICATED": "false", "TRUSTED_WORKER_NETWORKS": "127.0.0.0/8"}
    url = controller(env=env)
    worker_port = free_port()
    with RecordingProxy(f"http://127.0.0.1:{worker_port}") as proxy:
        args = ["--model-path", str(model_dir), "--device", "cpu", "--controller-address", url]
        args += ["--worker-address", proxy.url, "--port", str(worker_port)]
        fc_worker = fastchat("model_worker", *args)
        auth = {"Authorization": "Bearer user-key"}

        def registered() -> bool:
            answer = httpx.post(f"{url}/list_models", headers=auth, timeout=5).json()
            return "fc-llama" in answer.get("models", [])

        fc_worker.wait(registered)
        conv = httpx.post(f"{proxy.url}/worker_get_conv_template", timeout=10).json()["conv"]
        reply = chat(url, "fc-llama", CHATS[1], key="user-key")
        assert reply["usage"]["completion_tokens"] >= 1
        # The web chat's client renders the same template and streams from the FastChat worker.
        client = ControllerClient(url, api_key="user-key")
        address = client.worker_address("fc-llama")
        assert address == proxy.url
        template = client.conversation_template(address, "fc-llama")
        template.append_message(template.roles[0], "Hello!")
        template.append_message(template.roles[1], None)
        replies = client.stream_reply(
            address, "fc-llama", template, temperature=0.0, top_p=1.0, max_new_tokens=4
        )
        assert list(replies)
        ours, web = proxy.prompts()
    assert isinstance(conv["sep_style"], int) and "chat_template" not in conv
    # The prompts our controller and our web chat sent are the ones FastChat's own code builds.
    from_fastchat = fastchat_prompts(fastchat_python, tmp_path, conv, [CHATS[1], CHATS[0]])
    assert [ours, web] == from_fastchat


def fastchat_prompts(python: Path, folder: Path, conv: dict, chats: list) -> list[str]:
    out = folder / "fastchat-prompts.json"
    given = json.dumps({"convs": [conv], "chats": chats})
    script = Path(__file__).with_name("fastchat_prompts.py")
    run = [str(python), str(script), str(out)]
    subprocess.run(run, input=given, text=True, check=True, timeout=300, cwd=folder)
    return json.loads(out.read_text())["given"][0]
