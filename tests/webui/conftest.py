"""One serving stack for the web UI's tests: real controller and tiny worker processes on a real
Redis.

Package scope because a worker takes seconds to start; tests only add workers of their own
names, so they do not disturb each other. The browser tests start their own, fuller stack.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.support import ServiceProcess, free_port, wait_until

MODEL = "tiny-llama"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can react to a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@dataclass
class Stack:
    controller: str
    worker: str
    model: str
    # A second controller without workers: as a "worker" it answers streams with an error chunk.
    empty_controller: str
    logs: Path

    def register(self, worker: str, *models: str) -> None:
        """Register any address as a worker of ``models``, without heartbeats (never expires)."""
        body = {
            "worker_name": worker,
            "check_heart_beat": False,
            "worker_status": {"model_names": list(models)},
        }
        httpx.post(f"{self.controller}/register_worker", json=body, timeout=5).raise_for_status()


def _controller(redis_url: str, prefix: str, log_path: Path) -> tuple[str, ServiceProcess]:
    port = free_port()
    args = ["--port", str(port), "--redis-url", redis_url, "--redis-key-prefix", prefix]
    proc = ServiceProcess("services.controller", args, log_path).start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/test_connection")
    return url, proc


@pytest.fixture(scope="package")
def stack(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("webui-stack")
    prefixes = [f"test:{uuid.uuid4().hex[:12]}:" for _ in range(2)]
    procs: list[ServiceProcess] = []
    try:
        controller, proc = _controller(redis_url, prefixes[0], logs / "controller.log")
        procs.append(proc)
        empty, proc = _controller(redis_url, prefixes[1], logs / "empty-controller.log")
        procs.append(proc)
        port = free_port()
        args = [
            "--port",
            str(port),
            "--model-path",
            str(tiny_model_dir),
            "--model-names",
            MODEL,
            "--controller-address",
            controller,
            "--heart-beat-interval",
            "0.5",
        ]
        proc = ServiceProcess("services.model_worker", args, logs / "worker.log").start()
        procs.append(proc)
        worker = f"http://127.0.0.1:{port}"
        proc.wait_http(f"{worker}/health", timeout=120)
        _wait_listed(controller, MODEL)
        yield Stack(controller, worker, MODEL, empty, logs)
    finally:
        for proc in reversed(procs):
            proc.stop()
        client = redis.Redis.from_url(redis_url)
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                client.delete(*keys)


def _wait_listed(controller: str, model: str, timeout: float = 30.0) -> None:
    def listed() -> bool:
        response = httpx.post(f"{controller}/list_models", timeout=2)
        return model in response.json()["models"]

    if not wait_until(listed, timeout, 0.1):
        raise TimeoutError(f"{model} never appeared in {controller}/list_models")


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
