"""``make compose-check``: validate compose.yaml (alone and with compose.gpu.yaml, every profile)
with the real Compose v2 binary, and lint docker/Dockerfile with hadolint. Exit 1 on any finding."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compose_plan import compose_binary  # noqa: E402  (sibling script)

CHECKS = [
    ["-f", "compose.yaml", "config", "-q"],
    ["-f", "compose.yaml", "-f", "compose.gpu.yaml", "--profile", "*", "config", "-q"],
]


def main() -> int:
    failed = 0
    for args in CHECKS:
        result = subprocess.run([str(compose_binary()), *args], cwd=ROOT)
        print(f"{'ok  ' if result.returncode == 0 else 'FAIL'} docker compose {' '.join(args)}")
        failed |= result.returncode
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "docker/Dockerfile"], cwd=ROOT)
    print(f"{'ok  ' if result.returncode == 0 else 'FAIL'} hadolint docker/Dockerfile")
    return 1 if failed or result.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
