"""The compose stack in real containers: marked ``containers`` (``make test-containers``, which
prepares podman, its Docker API and the images first), kept out of ``make test``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import docker_api_answers

PREPARED = "CAMEL_IMAGE"  # set by scripts/container_engine.py once the images are built


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "containers: the compose stack in real containers (make test-containers)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/containers/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    if not os.environ.get(PREPARED):
        pytest.skip("needs the engine and images that make test-containers prepares")
    if not docker_api_answers():
        pytest.fail(f"no Docker API answers at DOCKER_HOST={os.environ.get('DOCKER_HOST')}")
    import docker

    client = docker.from_env(timeout=120)
    yield client
    client.close()
