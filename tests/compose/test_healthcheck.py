"""shared.healthcheck, the command behind every compose healthcheck."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.healthcheck import is_healthy, main
from tests.support import REPO_ROOT, free_port


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_is_healthy_only_on_success(http_url: str) -> None:
    assert is_healthy("http", f"{http_url}/health")
    assert not is_healthy("http", f"{http_url}/other")
    assert not is_healthy("http", f"http://127.0.0.1:{free_port()}/health")


def test_celery_without_a_worker_on_the_queue_is_unhealthy(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": f"test:{uuid.uuid4().hex[:12]}:"}
    assert not is_healthy("celery", "train", env)


def test_celery_with_no_broker_is_unhealthy() -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    assert not is_healthy("celery", "train", env)


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown health check kind 'tcp'"):
        is_healthy("tcp", "x")


def test_cli_exit_codes_are_what_docker_expects(http_url: str) -> None:
    def run(*args: str) -> int:
        return subprocess.run(
            [sys.executable, "-m", "shared.healthcheck", *args], cwd=REPO_ROOT, capture_output=True
        ).returncode

    assert run("http", f"{http_url}/health") == 0
    assert run("http", f"{http_url}/nope") == 1
    assert run("tcp", "x") == 2
    assert main(["http"]) == 2
