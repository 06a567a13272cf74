"""Redis, two controllers and two model workers on five hosts (network namespaces).

Clients use either controller; cutting one worker's link takes it out of routing within 3 s on
both controllers, and no request that had not started is lost meanwhile; healing the link brings
the worker back. Keys are on, as in a real deployment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.faults.netns import Network, can_make_namespaces, kill_namespace_processes
from tests.support import REPO_ROOT, wait_until

pytestmark = pytest.mark.skipif(
    not can_make_namespaces(), reason="network namespaces need root and iproute2"
)

API_KEY = f"key-{uuid.uuid4().hex}"
WORKER_TOKEN = f"token-{uuid.uuid4().hex}"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
CONTROLLER_PORT, WORKER_PORT, REDIS_PORT = 21001, 21002, 6379
LEAVES_ROUTING_WITHIN_S = 3.0


@dataclass
class Hosts:
    network: Network
    root: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, name: str, host: str, argv: list[str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            self.network.command(host, argv),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = proc
        return proc

    def logs(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _controller_url(hosts: Hosts, name: str) -> str:
    return f"http://{hosts.network.hosts[name]}:{CONTROLLER_PORT}"


def _workers_seen(url: str) -> set[str]:
    try:
        response = httpx.get(f"{url}/list_workers", headers=HEADERS, timeout=2)
        response.raise_for_status()
        return {w["name"] for w in response.json()["workers"]}
    except httpx.HTTPError:
        return set()


@pytest.fixture(scope="module")
def hosts(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    network = Network().open()
    root = tmp_path_factory.mktemp("multi-host")
    try:
        for octet, name in enumerate(("redis", "c1", "c2", "w1", "w2"), start=2):
            network.add_host(name, octet)
        redis_url = f"redis://{network.hosts['redis']}:{REDIS_PORT}/0"
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"multi:{uuid.uuid4().hex[:8]}:",
            "CONTROLLER_API_KEYS": API_KEY,
            "WORKER_TOKEN": WORKER_TOKEN,
            "ALLOW_UNAUTHENTICATED": "false",
            "LOG_DIR": str(root / "logs"),
        }
        hosts = Hosts(network, root, env)
        redis_args = ["--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]
        bind = ["--bind", network.hosts["redis"], "--dir", str(root), "--protected-mode", "no"]
        hosts.run("redis", "redis", ["redis-server", *redis_args, *bind])
        for name in ("c1", "c2"):
            address = network.hosts[name]
            hosts.run(
                name,
                name,
                [sys.executable, "-m", "services.controller", "--host", address,
                 "--port", str(CONTROLLER_PORT)],
            )  # fmt: skip
        for name, controller in (("w1", "c1"), ("w2", "c2")):
            address = network.hosts[name]
            hosts.run(
                name,
                name,
                [sys.executable, "-m", "services.model_worker", "--host", address,
                 "--port", str(WORKER_PORT), "--worker-address", f"http://{address}:{WORKER_PORT}",
                 "--model-path", str(tiny_model_dir), "--model-names", "tiny",
                 "--controller-address", _controller_url(hosts, controller)],
            )  # fmt: skip
        expected = {f"http://{network.hosts[w]}:{WORKER_PORT}" for w in ("w1", "w2")}
        ready = wait_until(
            lambda: all(_workers_seen(_controller_url(hosts, c)) == expected for c in ("c1", "c2")),
            120,
            0.5,
        )
        assert ready, "\n".join(f"--- {n}\n{hosts.logs(n)}" for n in hosts.processes)
        yield hosts
    finally:
        if "hosts" in locals():
            hosts.stop()
        kill_namespace_processes(network)
        network.close()


def _chat(url: str) -> tuple[int, str]:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hello!"}],
        "max_tokens": 8,
        "stream": True,
    }
    try:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=HEADERS, timeout=30
        ) as response:
            text = "".join(response.iter_text())
            failed = response.status_code != 200 or '"error"' in text
            return (response.status_code if failed else 200), text[-300:]
    except httpx.HTTPError as exc:
        return 0, repr(exc)


def _only(controllers: list[str], workers: set[str]) -> bool:
    return all(_workers_seen(url) == workers for url in controllers)


def _seconds_until(since: float, condition: Callable[[], bool], timeout: float) -> float:
    """Seconds from ``since`` until ``condition`` held (checked every 0.1 s); inf if never."""
    return time.monotonic() - since if wait_until(condition, timeout, 0.1) else float("inf")


def _chats(urls: list[str], count: int) -> list[tuple[int, str]]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(_chat, [urls[i % len(urls)] for i in range(count)]))


def test_either_controller_serves_and_a_cut_worker_leaves_routing_and_comes_back(
    hosts: Hosts,
) -> None:
    network = hosts.network
    controllers = [_controller_url(hosts, c) for c in ("c1", "c2")]
    w1 = f"http://{network.hosts['w1']}:{WORKER_PORT}"
    w2 = f"http://{network.hosts['w2']}:{WORKER_PORT}"

    before = _chats(controllers, 16)
    assert all(code == 200 for code, _ in before), before

    network.cut("w1")
    cut_at = time.monotonic()
    with ThreadPoolExecutor(1) as watcher:
        # When w1 leaves routing on both controllers, watched while the chats go on.
        gone = watcher.submit(_seconds_until, cut_at, lambda: _only(controllers, {w2}), 20)
        during = _chats(controllers, 24)  # none had started when the link went down
        gone_after = gone.result()
    assert all(code == 200 for code, _ in during), [r for r in during if r[0] != 200]
    # The default heartbeat expiry, plus the 0.1 s of the watch's polling.
    assert gone_after <= LEAVES_ROUTING_WITHIN_S + 0.1, f"left routing after {gone_after:.1f} s"

    network.heal("w1")
    assert wait_until(lambda: _only(controllers, {w1, w2}), 20, 0.2)
    after = _chats(controllers, 16)
    assert all(code == 200 for code, _ in after), after
    print(f"w1 left routing {gone_after:.1f} s after its link was cut; back after healing")
