"""Fixtures of the controller's REST API tests: a controller with its folders under the test's
tmp_path, the Redis stores it writes (to set up or look at records), and a small data file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.settings import CommonSettings
from shared.stores import Stores

CONVERSATION = {
    "id": "a",
    "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
}


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, str]:
    """The controller's data folders, as environment variables (IMPORT_DIR: pytest's temporary
    folder, which holds the test's files and the tiny models)."""
    return {
        "DATASETS_DIR": str(tmp_path / "datasets"),
        "JOBS_DIR": str(tmp_path / "jobs"),
        "MODELS_DIR": str(tmp_path / "models"),
        "IMPORT_DIR": os.environ["IMPORT_DIR"],
    }


@pytest.fixture
def api(controller: Callable[..., str], folders: dict[str, str]) -> str:
    return controller(env=folders)


@pytest.fixture
def stores(redis_url: str, redis_prefix: str) -> Iterator[Stores]:
    """The stores of the test's key prefix, as the controller builds them."""
    built = Stores.connect(CommonSettings(redis_url=redis_url, redis_key_prefix=redis_prefix))
    yield built
    built.close()


@pytest.fixture
def conv_file(tmp_path: Path) -> Path:
    """A one-conversation ShareGPT-style JSONL file."""
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(CONVERSATION) + "\n")
    return path


@pytest.fixture
def queued(stores: Stores) -> Callable[[str], list[dict]]:
    """The Celery messages waiting on a queue (nothing consumes them in these tests)."""

    def read(queue: str) -> list[dict]:
        raw = stores.client.lrange(stores.keys.prefix + queue, 0, -1)
        return [json.loads(item) for item in raw]

    return read
