"""compose.yaml -> local processes: hostnames, volumes, Redis, commands and start order."""

from __future__ import annotations

from pathlib import Path

import compose_plan
import pytest
from compose_plan import ComposeError, LocalService, plan_services, start_order

REDIS = "redis://127.0.0.1:6399/2"


def service(name: str, *deps: str) -> LocalService:
    return LocalService(
        name=name,
        module=f"services.{name}",
        argv=[],
        env={},
        depends_on={dep: "service_healthy" for dep in deps},
        healthcheck=None,
        one_shot=False,
    )


def config(**services: dict) -> dict:
    base = {"command": ["python", "-m", "services.controller"], "restart": "unless-stopped"}
    return {"services": {name: {**base, **spec} for name, spec in services.items()}}


def plan_one(spec: dict, tmp_path: Path, environ: dict | None = None) -> LocalService:
    defaults = {"models": tmp_path / "models"}
    planned = plan_services(
        config(redis={"image": "redis"}, controller={}, app=spec),
        REDIS,
        defaults,
        environ or {},
        python="/venv/python",
    )
    return next(s for s in planned if s.name == "app")


def test_service_hostnames_and_bind_address_become_loopback(tmp_path: Path) -> None:
    app = plan_one(
        {
            "command": ["python", "-m", "services.webui", "--host", "0.0.0.0", "--port", "7"],
            "environment": {
                "CONTROLLER_ADDRESS": "http://controller:21001",
                "OTHER": "https://user@controller/x",
                "BARE": "controller",
                "NOT_A_HOST": "controllers-are-fun http://controllerx:1",
            },
        },
        tmp_path,
    )
    assert app.argv == [
        "/venv/python",
        "-m",
        "services.webui",
        "--host",
        "127.0.0.1",
        "--port",
        "7",
    ]
    assert app.env == {
        "CONTROLLER_ADDRESS": "http://127.0.0.1:21001",
        "OTHER": "https://user@127.0.0.1/x",
        "BARE": "127.0.0.1",
        "NOT_A_HOST": "controllers-are-fun http://controllerx:1",
    }


def test_the_compose_redis_is_replaced_by_the_reused_one(tmp_path: Path) -> None:
    app = plan_one(
        {"environment": {"REDIS_URL": "redis://redis:6379/0", "BROKER": "redis://redis:6379"}},
        tmp_path,
    )
    assert app.env == {"REDIS_URL": REDIS, "BROKER": REDIS}


def test_named_volumes_become_local_folders_in_commands_and_environment(tmp_path: Path) -> None:
    spec = {
        "command": ["python", "-m", "services.trainer", "--out=/data/jobs/x", "/data/modelsX"],
        "environment": {"MODELS_DIR": "/data/models", "MODEL": "/data/models/Smol", "N": "/data"},
        "volumes": [
            {"type": "volume", "source": "models", "target": "/data/models"},
            {"type": "volume", "source": "jobs", "target": "/data/jobs"},
            {"type": "bind", "source": "/srv/cache", "target": "/cache"},
        ],
    }
    app = plan_one(spec, tmp_path, {"STACK_VOLUME_JOBS": str(tmp_path / "j")})
    assert app.env == {
        "MODELS_DIR": str(tmp_path / "models"),
        "MODEL": str(tmp_path / "models" / "Smol"),
        "N": "/data",
    }
    # --out=/data/jobs/x is rewritten; /data/modelsX is another path and stays.
    assert app.argv[3:] == [f"--out={tmp_path / 'j'}/x", "/data/modelsX"]
    # A volume without a default lands under data/<name> of the repository.
    assert set(app.folders) == {tmp_path / "models", tmp_path / "j", Path("/srv/cache")}


def test_volume_without_default_goes_to_the_data_folder() -> None:
    assert compose_plan.volume_folder("cache-x", {}, {}) == compose_plan.ROOT / "data" / "cache-x"
    env = {"STACK_VOLUME_CACHE_X": "/tmp/c"}
    assert compose_plan.volume_folder("cache-x", {}, env) == Path("/tmp/c")


def test_healthcheck_ports_are_kept_and_one_shots_have_none(tmp_path: Path) -> None:
    check = {"test": ["CMD", "python", "-m", "shared.healthcheck", "http", "http://controller:5/h"]}
    assert plan_one({"healthcheck": check}, tmp_path).healthcheck == (
        "http",
        "http://127.0.0.1:5/h",
    )
    job = plan_one({"restart": "no"}, tmp_path)
    assert job.one_shot and job.healthcheck is None


def test_redis_is_not_run_and_depends_on_redis_is_dropped(tmp_path: Path) -> None:
    planned = plan_services(
        config(redis={"image": "redis"}, app={"depends_on": {"redis": {}}}), REDIS, {}, {}
    )
    assert [s.name for s in planned] == ["app"] and planned[0].depends_on == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"command": ["celery", "worker"]}, "python -m <module>"),
        ({"healthcheck": {"test": ["CMD", "curl", "http://x"]}}, "shared.healthcheck"),
        ({"depends_on": {"nope": {"condition": "service_healthy"}}}, "unknown service nope"),
    ],
)
def test_what_cannot_run_locally_is_refused(spec: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match=message):
        plan_one(spec, tmp_path)


def test_start_order_puts_dependencies_first_and_keeps_file_order_otherwise() -> None:
    services = [service("webui", "controller"), service("ingestor"), service("controller")]
    assert [s.name for s in start_order(services)] == ["controller", "webui", "ingestor"]


def test_start_order_refuses_a_cycle() -> None:
    with pytest.raises(ComposeError, match="cycle"):
        start_order([service("a", "b"), service("b", "a")])


def test_module_exists_needs_a_main_for_packages() -> None:
    assert compose_plan.module_exists("services.controller")
    assert compose_plan.module_exists("services.model_worker.default_model")
    assert not compose_plan.module_exists("services")  # a package without __main__
    assert not compose_plan.module_exists("services.no_such_service")
    assert not compose_plan.module_exists("no_such_package.x")


def test_the_real_compose_file_plans_every_service_on_loopback(
    compose_config: dict, tmp_path: Path
) -> None:
    defaults = {name: tmp_path / name for name in ("models", "datasets", "jobs", "logs")}
    planned = plan_services(compose_config, REDIS, defaults, {})
    names = [s.name for s in planned]
    assert "redis" not in names
    for s in planned:
        assert names.index(s.name) > max((names.index(d) for d in s.depends_on), default=-1)
        text = " ".join([*s.argv, *s.env.values(), *(s.healthcheck or ())])
        assert "0.0.0.0" not in text and "/data/" not in text, s.name
        if s.name != "gateway":  # nginx in front of the web UI and the API: no Redis
            assert s.env["REDIS_URL"] == REDIS
        # Each service's log file keeps the name compose.yaml gives it (not a host's).
        assert s.env["LOG_NAME"].startswith(s.name), s.name
        for other in compose_config["services"]:
            assert f"//{other}:" not in text, (s.name, other)
