"""Test support: tiny models built offline, free ports, and real service processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.contracts import REQUEST_ID_HEADER

REPO_ROOT = Path(__file__).resolve().parent.parent
# FastChat 0.2.36's own Python (make install builds .venv/fastchat from requirements/fastchat.txt);
# FASTCHAT_PYTHON points elsewhere, e.g. at a FastChat virtualenv built outside the checkout.
FASTCHAT_PYTHON = Path(
    os.environ.get("FASTCHAT_PYTHON") or REPO_ROOT / ".venv" / "fastchat" / "bin" / "python"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "USER: Hello! ASSISTANT: Hi, how can I help you today?",
    "What is the capital of France? The capital of France is Paris.",
    "A chat between a curious user and an artificial intelligence assistant.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "def add(a, b):\n    return a + b\n",
    "Instruction: write a poem. Solution: Roses are red, violets are blue.",
    "Bonjour, ça va? Très bien, merci! 你好 🙂",
]


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A byte-level BPE tokenizer trained offline and a ~0.2M-parameter LlamaForCausalLM.

    Linear output sizes are multiples of 32 so that bitsandbytes can quantize them on CPU.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def post_json_text(url: str, text: bytes, **kwargs: Any) -> httpx.Response:
    """POST ``text`` labelled as JSON, as it is (to send malformed JSON, say)."""
    return httpx.post(url, content=text, headers={"content-type": "application/json"}, **kwargs)


def post_streamed(
    url: str, body: dict[str, Any], request_id: str | None = None, timeout: float = 60
) -> httpx.Response:
    """POST ``body`` to a streaming route and read the whole answer (``.content``), sending
    ``request_id`` as the request-id header when given."""
    headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=timeout) as response:
        response.read()
    return response


# Terminal statuses of the job-like records (datasets, fine-tuning jobs, merges).
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def wait_record(
    url: str, statuses: Collection[str] = TERMINAL, timeout: float = 120, interval: float = 0.5
) -> dict[str, Any]:
    """GET the record at ``url`` until its ``status`` is one of ``statuses``; returns it (and
    fails the test with the last one seen when ``timeout`` passes first)."""
    record: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal record
        record = httpx.get(url).json()
        return record.get("status") in statuses

    assert wait_until(reached, timeout, interval), record
    return record


def run_python(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` in the repository root, its output captured as text."""
    command = [sys.executable, *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def python_output(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """The standard output of ``python <args>``, which must exit 0."""
    result = run_python(*args, env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def usage_error(
    parse: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture
) -> str:
    """What ``parse(argv)`` writes to stderr on the way out with argparse's exit code 2."""
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ServiceProcess:
    """``python -m <module> <args>`` as a real process, logging to a file, stopped on exit."""

    def __init__(
        self, module: str, args: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.module = module
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_http(self, url: str, timeout: float = 60.0, method: str = "GET") -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited early:\n{self.logs()[-4000:]}")
            try:
                return httpx.request(method, url, timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        if not wait_until(ready, timeout, 0.2):
            raise TimeoutError(f"{self.module} not ready at {url}:\n{self.logs()[-4000:]}")

    def stop(self, sig_timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(sig_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        """Die without any goodbye (no deregistration, no clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_worker_process(
    launch: Callable[..., ServiceProcess],
    model_path: str | Path,
    *args: str,
    wait: bool = True,
    timeout: float = 120,
) -> tuple[str, ServiceProcess]:
    """``launch("services.model_worker", ...)``: a model worker on a free port serving
    ``model_path``, with ``args``; returns its URL and process, once ``/health`` answers unless
    ``wait`` is off."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = launch(
        "services.model_worker", "--port", str(port), "--model-path", str(model_path), *args
    )
    if wait:
        proc.wait_http(f"{url}/health", timeout=timeout)
    return url, proc


# The job services behind a controller: name -> ``python -m`` module and arguments.
JOB_SERVICES: dict[str, tuple[str, ...]] = {
    "ingestor": ("services.ingestor", "worker"),
    "trainer": ("services.trainer", "--gpus", "0"),
    "merger": ("services.merger",),
    "evaluator": ("services.evaluator",),
}


@dataclass
class Stack:
    """A controller (``url``) and the services a test starts behind it, all with ``env`` (the
    ``start_stack`` fixture's: the test's key prefix and folders, see ``service_env``)."""

    url: str
    env: dict[str, str]
    # ``launch(module, *args, env=...)`` starts a process stopped with the test (``service``).
    launch: Callable[..., ServiceProcess]

    def start(self, name: str) -> ServiceProcess:
        """The Celery worker of one of JOB_SERVICES."""
        module, *args = JOB_SERVICES[name]
        return self.launch(module, *args, env=self.env)

    def start_pool(self, worker_ports: int) -> ServiceProcess:
        """A model pool polling every 0.3 s, starting its workers on the ``worker_ports`` + 1
        ports from a free one; returned once it answers."""
        first, port = free_port(), free_port()
        args = ["--port", str(port), "--port-range", f"{first}-{first + worker_ports}"]
        env = {**self.env, "POOL_POLL_INTERVAL": "0.3"}
        pool = self.launch("services.model_pool", *args, "--controller-address", self.url, env=env)
        pool.wait_http(f"http://127.0.0.1:{port}/health")
        return pool


# Helpers for stacks of real services that outlive one test (module or package fixtures) ---------


def new_key_prefix() -> str:
    """A Redis key prefix no other test uses."""
    return f"test:{uuid.uuid4().hex[:12]}:"


def delete_keys(redis_url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (never anything else)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)


@contextmanager
def own_key_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted on exit."""
    prefix = new_key_prefix()
    try:
        yield prefix
    finally:
        delete_keys(redis_url, prefix)


def service_env(redis_url: str, prefix: str, root: Path) -> dict[str, str]:
    """The environment of a whole stack: Redis keys under ``prefix``, folders in ``root``."""
    return {
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "JOBS_DIR": str(root / "jobs"),
        "MODELS_DIR": str(root / "models"),
        "DATASETS_DIR": str(root / "datasets"),
        "LOG_DIR": str(root / "logs"),
    }


def write_conversations(path: Path, count: int = 40) -> Path:
    """A ShareGPT-format JSONL training file: ``count`` one-round conversations about Paris."""
    rows = [
        {
            "id": str(i),
            "conversations": [
                {"from": "human", "value": f"What is the capital of France? ({i})"},
                {"from": "gpt", "value": "The capital of France is Paris."},
            ],
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# Controllers started by the tests: URL -> (Redis URL, key prefix) of their worker registry.
CONTROLLER_REGISTRIES: dict[str, tuple[str, str]] = {}


def remember_registry(controller: str, env: dict[str, str]) -> None:
    """Note where ``controller`` (started with ``env`` over this process's environment) keeps
    its registry, for ``register_worker``."""
    merged = {**os.environ, **env}
    redis_url = merged.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    CONTROLLER_REGISTRIES[controller] = (redis_url, merged.get("REDIS_KEY_PREFIX") or "camelchat:")


def seed_worker(redis_url: str, prefix: str, worker: str, *models: str) -> None:
    """Put any address into the registry under ``prefix`` as a worker of ``models`` that never
    expires: a stand-in for a worker that crashed or hangs. (The controller itself registers only
    addresses that answer its status call, and drops any that stops heartbeating.)"""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from services.controller.registry import WorkerRegistry
    from shared.redis_client import async_redis
    from shared.redis_keys import RedisKeys
    from shared.schemas import WorkerStatus

    async def seed() -> None:
        client = async_redis(redis_url)
        try:
            registry = WorkerRegistry(client, RedisKeys(prefix), expiration=60.0)
            await registry.register(worker, WorkerStatus(model_names=list(models)), False)
            await client.persist(RedisKeys(prefix).worker(worker))
        finally:
            await client.aclose()

    # In a thread of its own: the caller may be inside an event loop (Playwright's, say).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed()).result()


def register_worker(controller: str, worker: str, *models: str) -> None:
    """Put any address into ``controller``'s registry as a worker of ``models`` that never
    expires (``seed_worker``); the controller must have been started by these helpers."""
    seed_worker(*CONTROLLER_REGISTRIES[controller], worker, *models)


def wait_listed(controller: str, model: str, timeout: float = 30.0) -> None:
    """Wait until the controller's ``/list_models`` names ``model``."""

    def listed() -> bool:
        return model in httpx.post(f"{controller}/list_models", timeout=2).json()["models"]

    if not wait_until(listed, timeout, 0.1):
        raise TimeoutError(f"{model} never appeared in {controller}/list_models")


class ProcessGroup:
    """Service processes sharing a log folder (``<name>.log``) and an environment; leaving the
    ``with`` block (or ``stop``) stops them, the last started first."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.processes: dict[str, ServiceProcess] = {}

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(
        self, name: str, module: str, *args: str, env: dict[str, str] | None = None
    ) -> ServiceProcess:
        """``python -m module args`` with the group's environment updated by ``env``."""
        log_path = self.log_dir / f"{name}.log"
        proc = ServiceProcess(module, list(args), log_path, {**self.env, **(env or {})}).start()
        self.processes[name] = proc
        return proc

    def start_controller(self, name: str = "controller", env: dict[str, str] | None = None) -> str:
        """A controller on a free port, answering; returns its URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.start(name, "services.controller", "--port", str(port), env=env)
        self.processes[name].wait_http(f"{url}/test_connection")
        remember_registry(url, {**self.env, **(env or {})})
        return url

    def start_model_worker(
        self, name: str, model_path: Path, model_name: str, controller: str, *, wait: bool = True
    ) -> str:
        """A model worker serving ``model_path`` as ``model_name``, heartbeats every 0.5 s;
        returns its URL (``wait_http(url + "/health")`` on its process when ``wait`` is off)."""
        args = ["--model-names", model_name, "--controller-address", controller]
        args += ["--heart-beat-interval", "0.5"]
        url, _ = start_worker_process(partial(self.start, name), model_path, *args, wait=wait)
        return url

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()
