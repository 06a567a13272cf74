"""Child processes whose output goes to a log file (model workers of the pool, training ranks)."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A ``preexec_fn``: Linux sends the child SIGTERM when its parent dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_logged(command: list[str], log_path: Path, **popen: Any) -> subprocess.Popen:
    """Start ``command`` with stdout and stderr appended to ``log_path`` and no stdin.

    The log is opened for the child only: the parent's copy is closed once the child holds it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as sink:
        return subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **popen
        )
