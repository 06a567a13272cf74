"""The tests' Redis comes from testcontainers whenever a Docker API answers (and REDIS_URL does
not name one): make test-containers leaves REDIS_URL unset and points DOCKER_HOST at podman."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest
import redis

from tests.conftest import REDIS_IMAGE


def test_the_redis_fixture_runs_a_container_of_the_redis_image(
    docker_client, redis_url: str, redis_prefix: str
) -> None:
    if os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL names a Redis: the fixture uses it")
    port = str(urlparse(redis_url).port)
    published = {
        binding["HostPort"]: container
        for container in docker_client.containers.list()
        for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values()
        for binding in bindings or []
    }
    assert port in published, redis_url
    assert REDIS_IMAGE in published[port].image.tags
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}probe", "1")
    assert client.get(f"{redis_prefix}probe") == b"1"
