"""A model worker killed under load (issue #13): three real tiny-model workers, 24 streaming
chats, one worker SIGKILLed while they run. Only streams already under way may fail; a request
without its first token goes to another worker, and the dead worker leaves routing at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.controller.kill_under_load import kill_under_load
from tests.support import ServiceProcess, wait_until

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def listed(url: str) -> list[str]:
    return sorted(w["name"] for w in httpx.get(f"{url}/list_workers").json()["workers"])


@pytest.fixture
def three_workers(
    controller: Callable[..., str], worker: Callable, tiny_model_dir: Path
) -> tuple[str, list[tuple[str, ServiceProcess]]]:
    url = controller()
    procs = [worker(tiny_model_dir, url, "--model-names", "tiny", wait=False) for _ in range(3)]
    for address, proc in procs:
        proc.wait_http(f"{address}/health", timeout=180)
    assert wait_until(lambda: len(listed(url)) == 3, 15)
    return url, procs


def test_a_worker_killed_under_load_loses_no_request_without_a_first_token(
    three_workers: tuple,
) -> None:
    url, procs = three_workers
    (victim_url, victim), *survivors = procs
    outcome = kill_under_load(url, "tiny", victim, streams=24, spread=3.0, kill_after=1.0)
    print(outcome.summary())
    assert len(outcome.streams) == 24
    assert outcome.failed_before_first_token == [], outcome.summary()
    assert wait_until(lambda: victim_url not in listed(url), 3)
    assert listed(url) == sorted(address for address, _ in survivors)


def test_an_idle_dead_worker_gets_no_request_after_its_first_refusal(
    three_workers: tuple,
) -> None:
    url, procs = three_workers
    (victim_url, victim), *_ = procs
    victim.kill()
    started = time.monotonic()
    for i in range(40):
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=60)
        assert answer.status_code == 200, (i, answer.text)
        if i == 2:  # shortest queue has tried every worker by now
            assert victim_url not in listed(url)
            assert time.monotonic() - started < 3
