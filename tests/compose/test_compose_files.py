"""compose.yaml and compose.gpu.yaml: valid for the real Compose v2, and every command, healthcheck,
volume path and variable in them points at something that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import compose_plan
import pytest

from shared import celery_app
from tests.compose.conftest import APP_SERVICES, CREDENTIALS, GPU_FILE, clean_environ
from tests.support import REPO_ROOT

# Modules of services still being written (module -> reason, xfail'd); empty once all have landed.
IN_PROGRESS: dict[str, str] = {}
APP_VOLUMES = {"models", "datasets", "jobs", "logs"}


def compose(
    bin_path: Path, *args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_path), *args],
        cwd=cwd,
        env=clean_environ() if env is None else env,
        capture_output=True,
        text=True,
    )


def app_services(config: dict) -> dict[str, dict]:
    return {name: s for name, s in config["services"].items() if "build" in s}


def module_sources(module: str) -> list[Path]:
    """The files of a `python -m` target: the module itself, or every module of the package
    (and the gateway's nginx.conf template)."""
    path = REPO_ROOT / module.replace(".", "/")
    if path.is_dir():
        return sorted([*path.glob("*.py"), *path.glob("*.conf.in")])
    return [path.with_suffix(".py")]


def test_compose_files_are_valid(compose_bin: Path) -> None:
    alone = compose(compose_bin, "-f", "compose.yaml", "config", "-q")
    assert alone.returncode == 0, alone.stderr
    merged = compose(
        compose_bin,
        "-f",
        "compose.yaml",
        "-f",
        "compose.gpu.yaml",
        "--profile",
        "*",
        "config",
        "-q",
    )
    assert merged.returncode == 0, merged.stderr


def test_the_binary_really_rejects_a_broken_file(compose_bin: Path, tmp_path: Path) -> None:
    """Guards against calling the always-0 console-script wrapper instead of the binary."""
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  a:\n    image: x\n    depends_on: [missing]\n")
    result = compose(compose_bin, "-f", str(broken), "config", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "missing" in result.stderr


def test_the_issue_services_are_there(compose_config: dict) -> None:
    assert {
        "redis",
        "controller",
        "ingestor",
        "trainer",
        "merger",
        "evaluator",
        "model-worker",
        "model-pool",
        "webui",
    } <= set(compose_config["services"])


def test_only_the_gateway_the_api_and_the_web_ui_are_published_on_loopback_by_default(
    compose_config: dict,
) -> None:
    ports = {
        name: [(p.get("host_ip"), p["published"]) for p in s.get("ports") or []]
        for name, s in compose_config["services"].items()
    }
    assert ports.pop("controller") == [("127.0.0.1", "21001")]
    assert ports.pop("webui") == [("127.0.0.1", "7860")]
    assert ports.pop("gateway") == [("127.0.0.1", "8080")]
    # Redis, the worker protocol, the workers (scaled: no shared host port) and the pool stay on
    # the stack's own network.
    assert all(published == [] for published in ports.values()), ports


def test_compose_refuses_to_start_without_the_credentials_and_says_how(compose_bin: Path) -> None:
    for missing in CREDENTIALS:
        env = {k: v for k, v in clean_environ().items() if k != missing}
        result = compose(compose_bin, "-f", "compose.yaml", "config", "-q", env=env)
        assert result.returncode == 1
        assert missing in result.stderr and "make up" in result.stderr, result.stderr


def test_every_app_service_gets_the_credentials_and_the_web_ui_its_key(
    compose_config: dict,
) -> None:
    for name, service in app_services(compose_config).items():
        if name == "gateway":  # nginx in front: the services behind it check the keys
            assert not set(CREDENTIALS) & set(service["environment"])
            continue
        for variable, value in CREDENTIALS.items():
            assert service["environment"][variable] == value, (name, variable)
    assert "WEBUI_API_KEY" in compose_config["services"]["webui"]["environment"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_command_is_an_existing_python_module(compose_config: dict, name: str) -> None:
    command = compose_config["services"][name]["command"]
    module = compose_plan.module_of(command, name)
    if module in IN_PROGRESS and not compose_plan.module_exists(module):
        pytest.xfail(IN_PROGRESS[module])
    assert compose_plan.module_exists(module), f"{name}: python -m {module} cannot run"


def test_every_app_service_is_checked(compose_config: dict) -> None:
    assert sorted(app_services(compose_config)) == sorted(APP_SERVICES)


def test_long_running_services_have_healthchecks_restart_and_health_dependencies(
    compose_config: dict,
) -> None:
    for name, service in compose_config["services"].items():
        if service.get("restart", "no") == "no":
            assert name == "model-init"  # the one-shot conversion
            continue
        assert service["restart"] == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, spec in (service.get("depends_on") or {}).items():
            wanted = "service_completed_successfully" if dep == "model-init" else "service_healthy"
            assert spec["condition"] == wanted, (name, dep)


def test_http_healthchecks_target_the_service_port_and_an_existing_route(
    compose_config: dict,
) -> None:
    for name, service in app_services(compose_config).items():
        check = compose_plan.healthcheck_of(service, name)
        if check is None or check[0] != "http":
            continue
        url = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", check[1])
        assert url, (name, check)
        command = service["command"]
        assert command[command.index("--port") + 1] == url.group(1), name
        path = url.group(2)
        if path != "/":
            module = compose_plan.module_of(command, name)
            sources = module_sources(module)
            routes = (f'.get("{path}")', f"location = {path} ")
            assert any(r in f.read_text() for f in sources for r in routes), (name, path)


def test_celery_healthchecks_name_a_queue_the_service_consumes(compose_config: dict) -> None:
    queues = {v for k, v in vars(celery_app).items() if k.endswith("_QUEUE")}
    expected = {"ingestor": "ingest", "trainer": "train", "merger": "merge", "evaluator": "eval"}
    found = {}
    for name, service in app_services(compose_config).items():
        check = compose_plan.healthcheck_of(service, name)
        if check and check[0] == "celery":
            assert check[1] in queues, f"{name}: queue {check[1]} is not in shared.celery_app"
            found[name] = check[1]
    assert found == expected


def test_container_paths_are_mounted_volumes(compose_config: dict) -> None:
    for name, service in app_services(compose_config).items():
        mounts = {v["target"]: v["source"] for v in service.get("volumes") or []}
        assert set(mounts.values()) <= APP_VOLUMES, name
        assert "/data/logs" in mounts, name
        text = " ".join([*service["command"], *map(str, service["environment"].values())])
        for path in re.findall(r"/data/[\w./-]*", text):
            assert any(path == t or path.startswith(t + "/") for t in mounts), (name, path)


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    documented = set(
        re.findall(r"(?m)^#? ?([A-Z][A-Z0-9_]*)=", (REPO_ROOT / ".env.example").read_text())
    )
    for file in (compose_plan.COMPOSE_FILE, GPU_FILE):
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", file.read_text()))
        assert used - documented == set(), file.name


def test_gpu_file_puts_trainer_and_workers_on_nvidia_with_the_cuda_image(gpu_config: dict) -> None:
    services = gpu_config["services"]
    for name in ("trainer", "model-worker", "model-pool"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
        assert services[name]["build"]["target"] == "cuda", name
    assert services["trainer"]["command"][-3] == "1"  # --gpus 1 by default
    assert services["model-worker"]["environment"]["WORKER_DEVICE"] == "cuda"


@pytest.mark.parametrize(("server", "backend"), [("tgi", "tgi"), ("vllm", "openai")])
def test_gpu_profiles_put_a_remote_backend_worker_behind_each_server(
    gpu_config: dict, server: str, backend: str
) -> None:
    services = gpu_config["services"]
    assert services[server]["profiles"] == [server]
    worker = services[f"{server}-worker"]
    command = worker["command"]
    assert compose_plan.module_of(command, server) == "services.model_worker"
    assert command[command.index("--backend") + 1] == backend
    assert f"//{server}:" in command[command.index("--backend-url") + 1]
    assert worker["depends_on"][server]["condition"] == "service_healthy"


def test_gpu_profiles_are_off_by_default(compose_bin: Path) -> None:
    result = compose(
        compose_bin, "-f", "compose.yaml", "-f", "compose.gpu.yaml", "config", "--services"
    )
    assert result.returncode == 0, result.stderr
    assert not {"tgi", "vllm", "tgi-worker", "vllm-worker"} & set(result.stdout.split())
