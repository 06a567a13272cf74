"""`docker compose up` proven in real containers: the images of docker/Dockerfile, compose.yaml
unchanged but for image names and host ports, and the credentials `make up` generates.

The tests run in file order on one project: up and healthy -> locked down (non-root, only the
public ports, keys required) -> test_message through the published port -> the web UI's login ->
three scaled workers -> make demo's pipeline across the containers -> `down -v` leaves nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.controller.demo import SAMPLES, run_demo
from shared.settings import DEFAULT_MODEL_NAME
from tests.compose.conftest import APP_SERVICES
from tests.containers.compose_stack import SERVICE_LABEL, ComposeStack, get
from tests.support import REPO_ROOT, wait_until

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import compose_plan  # a script, imported as a module
import credentials  # a script, imported as a module

PUBLISHED = {"controller", "webui", "gateway"}
QUESTION = "What is the capital of France?"
# The default model as every service sees it: in the models volume model-init fills.
BASE_MODEL = f"/data/models/{DEFAULT_MODEL_NAME}"


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    credentials.ensure_credentials(env_file, environ={})  # what the first `make up` does
    project = ComposeStack(docker_client, compose_plan.compose_binary(), env_file)
    try:
        project.compose("up", "--detach")
        yield project
    finally:
        project.close()


@pytest.fixture(scope="module")
def keys(stack: ComposeStack) -> dict[str, str]:
    return credentials.read_env_file(stack.env_file)


def test_every_service_becomes_healthy(stack: ComposeStack) -> None:
    health = stack.wait_healthy()
    services = {c.labels[SERVICE_LABEL] for c in stack.containers()}
    assert services == {"redis", *APP_SERVICES} - {"model-init"}, health
    (init,) = [c for c in stack.containers(all=True) if c.labels[SERVICE_LABEL] == "model-init"]
    assert init.attrs["State"]["ExitCode"] == 0, stack.logs("model-init")


def test_no_service_runs_as_root_and_only_the_public_ports_are_published(
    stack: ComposeStack,
) -> None:
    for container in stack.containers():
        service = container.labels[SERVICE_LABEL]
        assert stack.exec(service, "id", "-u").strip() != "0", service
        bindings = {
            port: hosts
            for port, hosts in (container.attrs["NetworkSettings"]["Ports"] or {}).items()
            if hosts
        }
        if service in PUBLISHED:
            assert [h["HostIp"] for hosts in bindings.values() for h in hosts] == ["127.0.0.1"]
        else:
            assert bindings == {}, (service, bindings)
    # The app services' user (uid 1000) wrote the model into the fresh named volume.
    assert stack.exec("controller", "id", "-u").strip() == "1000"
    assert "config.json" in stack.exec("controller", "ls", BASE_MODEL)


def test_the_api_needs_the_generated_key(stack: ComposeStack, keys: dict[str, str]) -> None:
    assert get(f"{stack.controller}/health").status_code == 200
    for api in (stack.controller, f"{stack.gateway}"):  # direct, and through the gateway
        assert get(f"{api}/v1/models").status_code == 401
        assert get(f"{api}/v1/models", "not-a-key").status_code == 401
        listed = get(f"{api}/v1/models", keys["CONTROLLER_API_KEY"])
        assert listed.status_code == 200, listed.text
    # The gateway passes on the public API only, and the web UI.
    assert get(f"{stack.gateway}/list_models").status_code != 200
    assert get(f"{stack.gateway}/").status_code == 200


def test_test_message_through_the_published_port_names_paris(stack: ComposeStack) -> None:
    # The client finds the key in the .env file, as `make test-message` after `make up` does.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env |= {"CAMEL_ENV_FILE": str(stack.env_file), "CONTROLLER_ADDRESS": stack.controller}
    result = subprocess.run(
        [sys.executable, "-m", "services.controller.test_message", "--message", QUESTION],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Models: ['{DEFAULT_MODEL_NAME}']" in result.stdout
    assert "Paris" in result.stdout.split("assistant: ", 1)[1], result.stdout


def test_the_web_ui_asks_for_a_login_and_takes_the_key(
    stack: ComposeStack, keys: dict[str, str]
) -> None:
    with httpx.Client(base_url=stack.webui, timeout=30) as browser:
        assert browser.get("/").status_code == 200  # the login page
        assert browser.get("/config").status_code == 401
        refused = browser.post("/login", data={"username": "ann", "password": "wrong"})
        assert refused.status_code == 400
        signed_in = browser.post(
            "/login", data={"username": "ann", "password": keys["CONTROLLER_API_KEYS"]}
        )
        assert signed_in.status_code == 200, signed_in.text
        assert browser.get("/config").status_code == 200


def test_three_scaled_workers_register_and_are_reachable(
    stack: ComposeStack, keys: dict[str, str]
) -> None:
    stack.compose("up", "--detach", "--no-recreate", "--scale", "model-worker=3")
    stack.wait_healthy()
    key = keys["CONTROLLER_API_KEY"]

    def workers() -> list[str]:
        listed = get(f"{stack.controller}/list_workers", key).json()["workers"]
        return sorted(w["name"] for w in listed if DEFAULT_MODEL_NAME in w["model_names"])

    assert wait_until(lambda: len(workers()) == 3, 120), workers()
    addresses = workers()
    assert len(set(addresses)) == 3
    # Reachable where it matters: from the controller's container, over the stack's network.
    probe = (
        "import os, sys, httpx\n"
        "token = {'Authorization': 'Bearer ' + os.environ['WORKER_TOKEN']}\n"
        "for worker in sys.argv[1:]:\n"
        "    status = httpx.post(worker + '/worker_get_status', headers=token, timeout=10)\n"
        "    print(worker, status.status_code, status.json()['model_names'])\n"
    )
    out = stack.exec("controller", "python", "-c", probe, *addresses)
    assert out.count(f"200 ['{DEFAULT_MODEL_NAME}']") == 3, out


def test_the_demo_pipeline_runs_across_the_containers(
    stack: ComposeStack, keys: dict[str, str]
) -> None:
    """make demo's stages (ingest uploaded samples, LoRA with merge, deploy on the pool, chat)
    through the published API, each stage in its own container, sharing the volumes."""
    said: list[str] = []
    outcome = run_demo(
        stack.controller,
        BASE_MODEL,
        SAMPLES,
        hyperparameters={"max_steps": 4, "batch_size": 2, "max_length": 256, "save_steps": 2},
        say=said.append,
        api_key=keys["CONTROLLER_API_KEY"],
    )
    job = outcome["job"]
    assert job["status"] == "succeeded", said
    name = job["fine_tuned_model"]
    assert "config.json" in stack.exec("model-pool", "ls", f"/data/models/{name}")
    assert outcome["deployment"]["status"] == "deployed"
    assert outcome["deployment"]["worker_address"].startswith("http://model-pool:")
    assert isinstance(outcome["reply"], str) and outcome["reply"].strip(), said
    listed = get(f"{stack.controller}/v1/models", keys["CONTROLLER_API_KEY"]).json()["data"]
    assert name in [m["id"] for m in listed]


def test_down_removes_every_container_network_and_volume(stack: ComposeStack) -> None:
    stack.compose("down", "-v", "--timeout", "30")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}


def test_compose_refuses_to_start_without_credentials(stack: ComposeStack, tmp_path: Path) -> None:
    empty = tmp_path / ".env"
    empty.write_text("")
    base = [arg if arg != str(stack.env_file) else str(empty) for arg in stack.base]
    env = {k: v for k, v in stack.env.items() if k not in ("CONTROLLER_API_KEYS", "WORKER_TOKEN")}
    result = subprocess.run(
        [*base, "up", "--detach"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "make up" in result.stderr and "CONTROLLER_API_KEYS" in result.stderr
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
