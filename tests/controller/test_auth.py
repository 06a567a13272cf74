"""Who may call which controller route (``services/controller/auth.py``), and a controller that
refuses to start without keys."""

from __future__ import annotations

import os
from typing import Any

import pytest

from services.controller.auth import ControllerAuth, TrustedNetworks, startup_problem
from shared.auth import Credentials
from shared.settings import AuthSettings
from tests.support import run_python

KEYS = Credentials(("user-key",), "worker-token")


def auth(trusted: str = "", public_metrics: bool = False, credentials: Credentials = KEYS) -> Any:
    return ControllerAuth(None, credentials, TrustedNetworks.parse(trusted), public_metrics)


def status_of(guard: ControllerAuth, path: str, token: str = "", peer: str = "127.0.0.1") -> int:
    refused = guard.decide(path, token, peer)
    return 200 if refused is None else refused[0]


@pytest.mark.parametrize(
    "path",
    ["/v1/models", "/v1/datasets", "/list_workers", "/worker_generate_stream", "/openapi.json"],
)
def test_other_routes_take_a_users_key_or_the_worker_token(path: str) -> None:
    guard = auth()
    assert status_of(guard, path) == 401
    assert status_of(guard, path, "nope") == 401
    assert status_of(guard, path, "user-key") == 200
    assert status_of(guard, path, "worker-token") == 200


@pytest.mark.parametrize("path", ["/register_worker", "/receive_heart_beat", "/unregister_worker"])
def test_membership_takes_the_worker_token_or_a_trusted_network(path: str) -> None:
    guard = auth(trusted="10.1.0.0/16, fd00::/8")
    assert status_of(guard, path, "worker-token") == 200
    assert status_of(guard, path, "user-key") == 403  # a user's key is not enough
    assert status_of(guard, path) == 401
    assert status_of(guard, path, peer="127.0.0.1") == 401  # loopback: not trusted by itself
    assert status_of(guard, path, peer="10.1.2.3") == 200
    assert status_of(guard, path, peer="::ffff:10.1.2.3") == 200
    assert status_of(guard, path, peer="fd00::5") == 200
    assert status_of(guard, path, peer="10.2.0.1") == 401
    assert status_of(guard, "/list_workers", peer="10.1.2.3") == 401  # only membership


def test_health_is_open_and_metrics_only_when_asked() -> None:
    assert status_of(auth(), "/health") == 200
    assert status_of(auth(), "/test_connection") == 200
    assert status_of(auth(), "/metrics") == 401
    assert status_of(auth(public_metrics=True), "/metrics") == 200


def test_running_open_admits_everyone_everywhere() -> None:
    guard = auth(credentials=Credentials((), "", allow_unauthenticated=True))
    for path in ("/v1/models", "/register_worker", "/metrics"):
        assert status_of(guard, path, peer="192.0.2.1") == 200
    # Keys win over ALLOW_UNAUTHENTICATED.
    keyed = auth(credentials=Credentials(("k",), "", allow_unauthenticated=True))
    assert status_of(keyed, "/v1/models") == 401


def test_a_bad_trusted_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8' is not a network"):
        TrustedNetworks.parse("10.0.0.0/8,10.0.0.300/8")
    settings = AuthSettings(controller_api_keys="k", trusted_worker_networks="nonsense")
    assert startup_problem(settings) == (
        "TRUSTED_WORKER_NETWORKS: 'nonsense' is not a network (CIDR, e.g. 10.0.0.0/8)"
    )


def test_a_controller_without_keys_refuses_to_start() -> None:
    env = {**os.environ, "CONTROLLER_API_KEYS": "", "ALLOW_UNAUTHENTICATED": "false"}
    result = run_python("-m", "services.controller", "--port", "1", env=env, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CONTROLLER_API_KEYS" in lines[0] and "ALLOW_UNAUTHENTICATED=true" in lines[0]
    assert "make up" in lines[0]
