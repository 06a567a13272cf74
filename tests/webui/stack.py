"""The services the web UI's tests run against, shared by ``conftest.py`` (the package's stack)
and ``test_browser.py`` (its own, fuller stack)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support import ProcessGroup, free_port, register_worker

MODEL = "tiny-llama"


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
        register_worker(self.controller, worker, *models)


def start_webui(
    group: ProcessGroup, controller: str, conv_logs: Path, *extra: str, wait: bool = True
) -> str:
    """``python -m services.webui`` on a free port, in front of ``controller``; returns its URL
    (``wait_http(url + "/")`` on the "webui" process when ``wait`` is off)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--port", str(port), "--controller-address", controller]
    group.start("webui", "services.webui", *args, "--conv-log-dir", str(conv_logs), *extra)
    if wait:
        group.processes["webui"].wait_http(f"{url}/", timeout=120)
    return url
