"""Fixtures for the compose stack: the Compose v2 binary and the models it reads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

# The runner lives in scripts/ (run as scripts, imported here as modules).
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import compose_plan

GPU_FILE = REPO_ROOT / "compose.gpu.yaml"
# The services compose.yaml builds from this repository; all but model-init keep running.
APP_SERVICES = [
    "model-init",
    "controller",
    "model-worker",
    "model-pool",
    "webui",
    "gateway",
    "ingestor",
    "trainer",
    "merger",
    "evaluator",
]


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    try:
        return compose_plan.compose_binary()
    except compose_plan.ComposeError as exc:
        pytest.fail(f"{exc} (the compose checks need the real binary, not a skip)")


@pytest.fixture(scope="session")
def compose_config(compose_bin: Path) -> dict:
    """compose.yaml alone, interpolated with the defaults (no .env, no shell overrides)."""
    return compose_plan.load_config(environ=clean_environ())


@pytest.fixture(scope="session")
def gpu_config(compose_bin: Path) -> dict:
    """compose.yaml merged with compose.gpu.yaml, every profile on."""
    environ = {**clean_environ(), "COMPOSE_PROFILES": "*"}
    return compose_plan.load_config([compose_plan.COMPOSE_FILE, GPU_FILE], environ)


# What `make up` would have written into .env: compose.yaml refuses to start without them.
CREDENTIALS = {"CONTROLLER_API_KEYS": "test-user-key", "WORKER_TOKEN": "test-worker-token"}


def clean_environ(credentials: bool = True) -> dict[str, str]:
    """An environment with no .env file, and of the variables compose.yaml interpolates only
    the stack's credentials (none with ``credentials=False``)."""
    import os

    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "COMPOSE_DISABLE_ENV_FILE": "1",
        **(CREDENTIALS if credentials else {}),
    }
