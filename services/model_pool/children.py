"""The model worker processes the pool starts: their command line, their log, their end.

The pool runs each worker as ``python -m services.model_worker`` with its flags, the way a person
would; it never imports the worker's code. Credentials go to the worker in its environment, never
on its command line, where any user of the host can read them (``ps``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.processes import start_logged
from shared.settings import AuthSettings

log = logging.getLogger(__name__)

WORKER_MODULE = "services.model_worker"
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_CHARS = 600
# A worker that cannot start (bad model, bad flag) exits with status 2 after one line of this form.
WORKER_ERROR_PREFIX = "error: "
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when the pool dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_environment(auth: AuthSettings) -> dict[str, str]:
    """The pool's environment with its credentials as the worker reads them (AuthSettings'
    variables), whether the pool got them from its environment or its flags."""
    values = {
        name.upper(): str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in auth.model_dump().items()
    }
    return {**os.environ, **values}


@dataclass(frozen=True)
class WorkerLaunch:
    """Where a new worker listens and whom it tells."""

    host: str
    port: int
    address: str
    controller_address: str


def worker_command(
    python: str, name: str, record: dict[str, Any], launch: WorkerLaunch, extra: list[str]
) -> list[str]:
    """The command line serving ``record``'s model under ``name``; ``extra`` flags go last."""
    command = [
        python,
        "-m",
        WORKER_MODULE,
        "--model-path",
        record["path"],
        "--model-names",
        name,
        "--host",
        launch.host,
        "--port",
        str(launch.port),
        "--worker-address",
        launch.address,
        "--controller-address",
        launch.controller_address,
    ]
    if record.get("conv_template"):
        command += ["--conv-template", record["conv_template"]]
    return command + extra


@dataclass
class Child:
    """One model worker started by the pool."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def spawn(
        cls, name: str, port: int, command: list[str], log_path: Path, env: dict[str, str]
    ) -> Child:
        """Start the worker with ``env`` and its output appended to ``log_path``."""
        process = start_logged(command, log_path, preexec_fn=_die_with_parent, env=env)
        return cls(name, port, process, log_path)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def failure_reason(self) -> str:
        """The worker's own error message (its last ``error:`` line on), else its log's end."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        start = text.rfind("\n" + WORKER_ERROR_PREFIX)
        if start >= 0:
            return text[start + 1 :].strip()[:LOG_TAIL_CHARS]
        return text.strip()[-LOG_TAIL_CHARS:]

    def stop(self) -> None:
        """SIGTERM (the worker unregisters itself), then SIGKILL after a grace period."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log.info("event=model_worker_stopped model=%s port=%d", self.name, self.port)
