"""schemathesis against a model worker's OpenAPI document: every operation (FastChat's and TGI's
routes), called with a key, with data that fits its schema and data that does not, never answers
a server error. The worker serves the tiny model; examples per operation are bounded, so the run
takes a minute or two.

The operations are driven one by one with hypothesis (schemathesis' pytest loader for a schema
from a fixture does not run under pytest 9), and every failing one is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support import ProcessGroup, start_worker_process

KEY = "user-key-for-the-schema-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES_PER_OPERATION = 25
# What the worker documents: FastChat's routes, TGI's, health and metrics.
EXPECTED_OPERATIONS = {
    "POST /worker_generate_stream",
    "POST /worker_generate",
    "POST /worker_generate_completion_stream",
    "POST /worker_generate_completion",
    "POST /count_token",
    "POST /model_details",
    "POST /worker_get_conv_template",
    "POST /worker_get_status",
    "GET /metrics",
    "GET /health",
    "POST /",
    "POST /generate",
    "POST /generate_stream",
    "POST /tokenize",
    "GET /info",
}


@pytest.fixture(scope="module")
def worker_schema(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[schemathesis.BaseSchema]:
    env = {"CONTROLLER_API_KEYS": KEY, "ALLOW_UNAUTHENTICATED": "false"}
    with ProcessGroup(tmp_path_factory.mktemp("logs"), env) as group:
        launch = partial(group.start, "worker")
        url, _ = start_worker_process(
            launch, tiny_model_dir, "--no-register", "--model-names", "tiny"
        )
        yield schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH, timeout=30)


def fits_the_tiny_model(case: schemathesis.Case) -> schemathesis.Case:
    """A FastChat generation asks for a few tokens: the tiny model's context is 256 tokens, and
    larger values are all answered 400 before anything is generated."""
    if case.operation.path.startswith("/worker_generate") and isinstance(case.body, dict):
        case.body = {**case.body, "max_new_tokens": min(case.body.get("max_new_tokens", 8), 8)}
    return case


def exercise(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    """Up to EXAMPLES_PER_OPERATION calls of ``operation``; raises on the first server error."""
    cases = operation.as_strategy(generation_mode=mode)
    if mode == GenerationMode.POSITIVE:
        cases = cases.map(fits_the_tiny_model)

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, checks=[not_a_server_error], timeout=60)

    call()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_a_server_error(
    worker_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in worker_schema.get_all_operations()]
    names = {f"{op.method.upper()} {op.path}" for op in operations}
    assert names >= EXPECTED_OPERATIONS
    failures = []
    for operation in operations:
        try:
            exercise(operation, mode)
        except Unsatisfiable:  # nothing to send that breaks the schema (no body, no parameter)
            pass
        except Exception as exc:  # each operation's failure is reported
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
