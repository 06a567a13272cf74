"""schemathesis against a keyed controller's OpenAPI document: every operation, generated
requests (valid and not: schemathesis's positive and negative modes), and never a server error
(5xx).

The users' key goes with every call, the worker token with the worker-membership routes (which a
user's key may not call), so that every operation is exercised past its credential check. The
number of examples per operation bounds the run to a few minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error

from services.controller.app import create_app
from services.controller.auth import MEMBERSHIP_PATHS
from tests.support import ServiceProcess, free_port

USER_KEY, WORKER_TOKEN = "schema-user-key", "schema-worker-token"
EXAMPLES_PER_OPERATION = 50


@pytest.fixture(scope="module")
def controller_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    root = tmp_path_factory.mktemp("schema")
    port = free_port()
    env = {
        "CONTROLLER_API_KEYS": USER_KEY,
        "WORKER_TOKEN": WORKER_TOKEN,
        "ALLOW_UNAUTHENTICATED": "false",
        # Registering a generated address asks it for its status: fail fast.
        "CONTROLLER_WORKER_STATUS_TIMEOUT": "0.5",
        "CONTROLLER_WORKER_CONNECT_TIMEOUT": "0.5",
        **{name: str(root / name.lower()) for name in ("DATASETS_DIR", "JOBS_DIR", "MODELS_DIR")},
    }
    args = ["--port", str(port), "--redis-url", redis_url, "--redis-key-prefix", prefix]
    proc = ServiceProcess("services.controller", args, Path(root) / "controller.log", env).start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(f"{url}/health")
        yield url
    finally:
        proc.stop()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)


# The document the controller serves, built in-process so that each operation is a test of its
# own (the served one is the same app's: compared in the first test).
SCHEMA = schemathesis.openapi.from_dict(create_app().openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_the_served_document_is_the_one_tested(controller_url: str) -> None:
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    served = httpx.get(f"{controller_url}/openapi.json", headers=headers).json()
    assert served == SCHEMA.raw_schema


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_operation_answers_with_a_server_error(
    controller_url: str, operation: APIOperation, mode: GenerationMode
) -> None:
    key = WORKER_TOKEN if operation.path in MEMBERSHIP_PATHS else USER_KEY
    headers = {"Authorization": f"Bearer {key}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def no_server_error(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=controller_url, headers=headers, checks=[not_a_server_error], timeout=30
        )
        if mode is GenerationMode.POSITIVE:  # negative cases may drop the credential
            assert response.status_code not in (401, 403), response.text  # reached the route

    try:
        no_server_error()
    except Unsatisfiable:
        # Nothing of this operation can be sent invalid (no body, only free-form strings).
        assert mode is GenerationMode.NEGATIVE, operation.label
        pytest.skip("no invalid request of this operation can be generated")
