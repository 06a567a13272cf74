"""Shared fixtures: a real Redis, isolated key prefixes, tiny models, and service processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from shared.settings import ENV_FILE_VARIABLE
from tests.support import (
    REPO_ROOT,
    ServiceProcess,
    Stack,
    build_tiny_llama,
    free_port,
    remember_registry,
    service_env,
    start_worker_process,
    wait_until,
)

# A developer's .env (keys `make up` generated) never reaches the tests or what they start.
os.environ[ENV_FILE_VARIABLE] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The processes tests start run open unless a test gives them keys (CONTROLLER_API_KEYS,
# WORKER_TOKEN): the security tests do, to check that every route asks for one.
os.environ.setdefault("ALLOW_UNAUTHENTICATED", "true")
# The processes tests start log to their captured output only, not to LOG_DIR/<service>.log
# (tests of the daily files turn it on).
os.environ.setdefault("LOG_TO_FILE", "false")
# Workers the tests start serve tiny random models in fp32: on a CPU with AVX512-BF16 their
# auto dtype would be bf16, which pays off for real models but makes a 0.2M-parameter one about
# 2x slower per token (conversion costs more than it saves). The auto choice has its own tests.
os.environ.setdefault("WORKER_DTYPE", "float32")


@pytest.fixture(scope="session", autouse=True)
def _test_files_are_importable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Requests may name server paths only under the allowed folders (``shared/paths.py``); the
    files tests make live under pytest's temporary folder, which the processes they start take as
    their IMPORT_DIR (a test that checks the roots sets its own)."""
    os.environ["IMPORT_DIR"] = str(tmp_path_factory.getbasetemp())


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


# The Redis image testcontainers runs (make test-containers gives its locally built stand-in).
REDIS_IMAGE = os.environ.get("REDIS_IMAGE", "redis:7.4.2-alpine")


def docker_api_answers() -> bool:
    """Whether a Docker API answers ($DOCKER_HOST, e.g. podman's socket, else the default)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, no engine: all mean "no"
        return False


def _redis_container() -> Iterator[str]:
    from testcontainers.community.redis import RedisContainer

    with RedisContainer(REDIS_IMAGE) as container:
        host = container.get_container_host_ip()
        yield f"redis://{host}:{container.get_exposed_port(6379)}/0"


def _private_redis_server(server: str, workdir: Path) -> Iterator[str]:
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([server, *args, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        if not wait_until(lambda: _answers(url), 10):
            pytest.fail("redis-server was started for the tests but never answered")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis to test against: $REDIS_URL; else a testcontainers Redis when a Docker API
    answers (``REDIS_IMAGE``); else a private redis-server."""
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        if not _answers(env_url):
            pytest.fail(f"REDIS_URL={env_url} is set but no Redis answers there")
        yield env_url
        return
    if docker_api_answers():
        yield from _redis_container()
        return
    server = shutil.which("redis-server")
    if not server:
        pytest.fail(
            "No Redis for the tests: set REDIS_URL, run a Docker engine for testcontainers, "
            "or install redis-server"
        )
    yield from _private_redis_server(server, tmp_path_factory.mktemp("redis"))


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def _swept_prefixes(redis_url: str) -> Iterator[list[str]]:
    """Every prefix handed out, deleted again when the session ends: a process stopped after
    its test's own clean-up (a worker's last heartbeat, a Celery worker's bookkeeping) can still
    write a key or two under it."""
    prefixes: list[str] = []
    yield prefixes
    client = redis.Redis.from_url(redis_url)
    for prefix in prefixes:
        _delete_prefix(client, prefix)


@pytest.fixture
def redis_prefix(redis_url: str, _swept_prefixes: list[str]) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    _swept_prefixes.append(prefix)
    yield prefix
    _delete_prefix(redis.Redis.from_url(redis_url), prefix)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real embedded default model, converted on first use (make test does it up front)."""
    from services.model_worker.default_model import convert
    from shared.settings import default_model_dir as configured

    return convert(configured())


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start ``python -m <module>`` processes that are stopped when the test ends."""
    started: list[ServiceProcess] = []

    def start(module: str, *args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        name = f"{module.rsplit('.', 1)[-1]}-{len(started)}.log"
        proc = ServiceProcess(module, list(args), tmp_path / name, env).start()
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def controller(
    service: Callable[..., ServiceProcess], redis_url: str, redis_prefix: str
) -> Callable[..., str]:
    """Start a controller process on a free port; returns its URL."""

    def start(
        *extra: str,
        expiration: float = 3.0,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        port = port or free_port()
        proc = service(
            "services.controller",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--redis-key-prefix",
            redis_prefix,
            "--heart-beat-expiration",
            str(expiration),
            *extra,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        proc.wait_http(f"{url}/test_connection")
        remember_registry(url, {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix})
        return url

    return start


@pytest.fixture
def worker(service: Callable[..., ServiceProcess]) -> Callable[..., tuple[str, ServiceProcess]]:
    """Start a model worker process on a free port; returns (its URL, the process)."""

    def start(
        model_path: Path, controller_url: str, *extra: str, wait: bool = True
    ) -> tuple[str, ServiceProcess]:
        args = ["--controller-address", controller_url, "--heart-beat-interval", "0.5"]
        return start_worker_process(service, model_path, *args, *extra, wait=wait)

    return start


@pytest.fixture
def start_stack(
    controller: Callable[..., str],
    service: Callable[..., ServiceProcess],
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> Callable[..., Stack]:
    """Start a controller for a stack of services and return the Stack, which starts the job
    services and model pool behind it. Every process gets the stack's environment: this test's
    Redis key prefix and data folders under its tmp_path (``service_env``), updated by ``env``."""

    def start(env: dict[str, str] | None = None) -> Stack:
        stack_env = {**service_env(redis_url, redis_prefix, tmp_path), **(env or {})}
        return Stack(controller(env=stack_env), stack_env, service)

    return start


__all__ = ["REPO_ROOT"]
