"""``make compose-check``: validate compose.yaml (alone and with compose.gpu.yaml, every profile)
with the real Compose v2 binary, and lint the Dockerfiles with hadolint. Exit 1 on any finding.

compose.yaml refuses to run without the stack's credentials; placeholders stand in for them
(unless set in the environment), since only the files are checked here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compose_plan import compose_binary  # noqa: E402  (sibling script)

# The image of every service, and the base images make test-containers makes where no registry
# answers.
DOCKERFILES = ["docker/Dockerfile", "docker/base/python.Dockerfile", "docker/base/redis.Dockerfile"]
PLACEHOLDERS = {"CONTROLLER_API_KEYS": "placeholder", "WORKER_TOKEN": "placeholder"}
CHECKS = [
    ["-f", "compose.yaml", "config", "-q"],
    ["-f", "compose.yaml", "-f", "compose.gpu.yaml", "--profile", "*", "config", "-q"],
]


def main() -> int:
    failed = 0
    env = {**PLACEHOLDERS, **os.environ}
    for args in CHECKS:
        result = subprocess.run([str(compose_binary()), *args], cwd=ROOT, env=env)
        print(f"{'ok  ' if result.returncode == 0 else 'FAIL'} docker compose {' '.join(args)}")
        failed |= result.returncode
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    for dockerfile in DOCKERFILES:
        result = subprocess.run([hadolint, dockerfile], cwd=ROOT)
        print(f"{'ok  ' if result.returncode == 0 else 'FAIL'} hadolint {dockerfile}")
        failed |= result.returncode
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
