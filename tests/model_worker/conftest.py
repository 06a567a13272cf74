"""Fixtures of the model-worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServiceProcess, free_port


@pytest.fixture(scope="module")
def worker_url(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A worker process serving the tiny model as "tiny", without a controller."""
    port = free_port()
    proc = ServiceProcess(
        "services.model_worker",
        [
            "--port",
            str(port),
            "--model-path",
            str(tiny_model_dir),
            "--no-register",
            "--model-names",
            "tiny",
        ],
        tmp_path_factory.mktemp("logs") / "worker.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(f"{url}/health", timeout=120)
        yield url
    finally:
        proc.stop()
