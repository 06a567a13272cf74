"""``make up|down|ps``: the stack of compose.yaml, with Docker Compose or as local processes.

With a Docker engine that answers, this is ``docker compose up -d --wait`` / ``down`` / ``ps``
(add compose.gpu.yaml with ``COMPOSE_FILE=compose.yaml:compose.gpu.yaml``). Without one (these
machines), scripts/compose_local.py runs the same service definitions as local processes.
$STACK_MODE=docker|local forces a mode.
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


def mode() -> str:
    forced = os.environ.get("STACK_MODE", "")
    if forced in ("docker", "local"):
        return forced
    return "docker" if docker_answers() else "local"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=list(DOCKER_COMMANDS))
    args, rest = parser.parse_known_args()
    # A stack started locally is stopped locally, even if an engine answers by now.
    if mode() == "docker" and not compose_local.read_state():
        docker = ["docker", "compose", *DOCKER_COMMANDS[args.command], *rest]
        return subprocess.run(docker, cwd=ROOT).returncode
    return compose_local.main([args.command, *rest])


if __name__ == "__main__":
    sys.exit(main())
