"""compose.yaml as a user runs it: the real Compose v2 binary on a Docker API (in
``make test-containers``, podman's), with the credentials ``make up`` would generate.

Podman 4.3 runs healthchecks only from systemd timers, which these machines lack, so a compose
``depends_on: condition: service_healthy`` would wait forever: where the engine is podman,
``Healthchecks`` runs each container's own healthcheck (``podman healthcheck run``) until it is
healthy, as Docker would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import docker
from tests.support import REPO_ROOT, free_port

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def engine_is_podman(client: docker.DockerClient) -> bool:
    components = client.version().get("Components") or []
    return any("podman" in str(c.get("Name", "")).lower() for c in components)


class Healthchecks(threading.Thread):
    """Runs the healthcheck of every not-yet-healthy container of ``project``, every few
    seconds, until stopped."""

    def __init__(self, client: docker.DockerClient, project: str, every: float = 3.0) -> None:
        super().__init__(daemon=True, name=f"healthchecks-{project}")
        self.client, self.project, self.every = client, project, every
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            for container in self.client.containers.list(
                filters={"label": f"{PROJECT_LABEL}={self.project}"}
            ):
                if health_of(container) not in (None, "healthy"):
                    subprocess.run(
                        ["podman", "healthcheck", "run", container.id],
                        capture_output=True,
                        check=False,
                    )

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def health_of(container: Any) -> str | None:
    """healthy / starting / unhealthy; None for a container without a healthcheck."""
    health = container.attrs.get("State", {}).get("Health") or {}
    return health.get("Status") or None


class ComposeStack:
    """One compose project of compose.yaml, on free host ports, with its own .env file."""

    def __init__(self, client: docker.DockerClient, compose_bin: Path, env_file: Path) -> None:
        self.client = client
        self.project = f"camelct{os.getpid()}"
        self.env_file = env_file
        self.ports = {
            "CONTROLLER_PORT": free_port(),
            "WEBUI_PORT": free_port(),
            "GATEWAY_PORT": free_port(),
        }
        self.base = [str(compose_bin), "-p", self.project, "--project-directory", str(REPO_ROOT)]
        self.base += ["--env-file", str(env_file), "-f", str(REPO_ROOT / "compose.yaml")]
        self.env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}}
        self.healthchecks: Healthchecks | None = None
        if shutil.which("podman") and engine_is_podman(client):
            self.healthchecks = Healthchecks(client, self.project)
            self.healthchecks.start()

    @property
    def controller(self) -> str:
        return f"http://127.0.0.1:{self.ports['CONTROLLER_PORT']}"

    @property
    def webui(self) -> str:
        return f"http://127.0.0.1:{self.ports['WEBUI_PORT']}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['GATEWAY_PORT']}"

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*self.base, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stderr[-3000:]}"
        return result

    def exec(self, service: str, *command: str) -> str:
        return self.compose("exec", "-T", service, *command, timeout=120).stdout

    def containers(self, *, all: bool = False) -> list[Any]:
        label = f"{PROJECT_LABEL}={self.project}"
        return self.client.containers.list(all=all, filters={"label": label})

    def wait_healthy(self, timeout: float = 600) -> dict[str, str]:
        """Every running container with a healthcheck healthy; returns name -> health."""
        deadline = time.monotonic() + timeout
        while True:
            health = {c.name: health_of(c) for c in self.containers()}
            waiting = {name: h for name, h in health.items() if h not in (None, "healthy")}
            if not waiting:
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy after {timeout:.0f} s: {waiting}\n{self.ps()}")
            time.sleep(2)

    def ps(self) -> str:
        return subprocess.run(
            [*self.base, "ps", "-a"], env=self.env, capture_output=True, text=True, check=False
        ).stdout

    def logs(self, service: str) -> str:
        return subprocess.run(
            [*self.base, "logs", "--tail", "60", service],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def leftovers(self) -> dict[str, list[str]]:
        """What of the project the engine still has: containers, networks, volumes."""
        label = {"label": f"{PROJECT_LABEL}={self.project}"}
        return {
            "containers": [c.name for c in self.client.containers.list(all=True, filters=label)],
            "networks": [n.name for n in self.client.networks.list(filters=label)],
            "volumes": [v.name for v in self.client.volumes.list(filters=label)],
        }

    def close(self) -> None:
        if self.leftovers() != {"containers": [], "networks": [], "volumes": []}:
            subprocess.run(
                [*self.base, "down", "-v", "--timeout", "10"],
                env=self.env,
                capture_output=True,
                check=False,
            )
        if self.healthchecks is not None:
            self.healthchecks.stop()


def get(url: str, key: str = "", **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(url, headers=headers, timeout=30, **kwargs)
