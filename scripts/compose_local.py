"""Run compose.yaml's services as local processes: ``python scripts/compose_local.py up|down|ps``.

For machines without a Docker engine. ``up`` reuses a Redis that answers ($REDIS_URL, else
127.0.0.1:6379; else starts a private one), reads compose.yaml through the Compose binary (see
compose_plan.py for the translation), then starts each service as soon as its ``depends_on``
conditions hold, waiting on the same healthchecks Docker would run. Each service writes its own
daily-rotated $LOG_DIR/<LOG_NAME>.log (shared/logging_setup.py; stderr is off, LOG_CONSOLE=false),
and whatever else it prints (a crash's traceback) goes to $LOG_DIR/<service>.out; pid files and
state go to $STACK_RUN_DIR. ``down`` stops exactly what ``up``
started; ``ps`` shows each service's health. A service whose module does not exist yet is skipped
with a warning, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import compose_plan  # noqa: E402  (sibling script)
import ensure_redis  # noqa: E402  (sibling script)

from shared.healthcheck import is_healthy  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402

POLL_SECONDS = 0.3
HEALTH_ENV_KEYS = ("REDIS_URL", "REDIS_KEY_PREFIX", "CELERY_BROKER_URL")


def run_dir() -> Path:
    return Path(os.environ.get("STACK_RUN_DIR", ROOT / "run"))


def state_path() -> Path:
    return run_dir() / "stack.json"


def log_dir() -> Path:
    return CommonSettings().log_dir


def volume_defaults() -> dict[str, Path]:
    """Named volumes -> the folders the services use by default when run without Docker."""
    common = CommonSettings()
    return {
        "models": common.models_dir,
        "datasets": common.datasets_dir,
        "jobs": common.jobs_dir,
        "logs": common.log_dir,
    }


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; reaps it first if it is our own exited child (``up`` failing)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child: started by an earlier `up`
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_state() -> dict:
    path = state_path()
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(state: dict) -> None:
    state_path().write_text(json.dumps(state, indent=2))


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group (Celery's warm shutdown, uvicorn's graceful one), then SIGKILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return


def entry_healthy(entry: dict) -> bool:
    if not entry.get("health"):
        return alive(entry["pid"])
    kind, target = entry["health"]
    return is_healthy(kind, target, entry.get("health_env", {}))


def service_log(service: compose_plan.LocalService) -> Path:
    """The daily log the service writes itself: $LOG_DIR/<LOG_NAME>.log (compose.yaml names it)."""
    name = service.env.get("LOG_NAME") or service.name
    return log_dir() / f"{name.replace('{hostname}', socket.gethostname())}.log"


def tail(path: Path, lines: int = 30) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []


class Launch:
    """One service being started: its process and what its dependents may rely on."""

    def __init__(self, service: compose_plan.LocalService, timeout: float) -> None:
        self.service = service
        self.log_path = service_log(service)
        self.output_path = log_dir() / f"{service.name}.out"
        for folder in service.folders:
            folder.mkdir(parents=True, exist_ok=True)
        with self.output_path.open("ab") as output:
            self.proc = subprocess.Popen(
                service.argv,
                cwd=ROOT,
                env={**os.environ, **service.env, "LOG_CONSOLE": "false"},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (run_dir() / f"{service.name}.pid").write_text(f"{self.proc.pid}\n")
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.healthy = False
        self.completed = False

    def entry(self) -> dict:
        check = self.service.healthcheck
        return {
            "name": self.service.name,
            "pid": self.proc.pid,
            "module": self.service.module,
            "one_shot": self.service.one_shot,
            "health": list(check) if check else None,
            "health_env": {k: v for k, v in self.service.env.items() if k in HEALTH_ENV_KEYS},
            "urls": self.service.published,
            "log": str(self.log_path),
            "output": str(self.output_path),
        }

    def satisfies(self, condition: str) -> bool:
        if condition == "service_completed_successfully":
            return self.completed
        if condition == "service_healthy":
            return self.healthy or (self.service.healthcheck is None and not self.service.one_shot)
        return True  # service_started

    def poll(self) -> str | None:
        """Update the state; return an error message if the service failed."""
        code = self.proc.poll()
        if self.service.one_shot:
            if code is None:
                return self._timed_out()
            self.completed = code == 0
            return None if self.completed else f"exited with status {code}"
        if code is not None:
            return f"exited with status {code}"
        check = self.service.healthcheck
        env = {k: v for k, v in self.service.env.items() if k in HEALTH_ENV_KEYS}
        self.healthy = check is None or is_healthy(check[0], check[1], env)
        return None if self.healthy else self._timed_out()

    def failure(self, error: str) -> str:
        """``error`` with the end of the service's output and of its log."""
        parts = [f"{self.service.name} {error}"]
        for path in (self.output_path, self.log_path):
            if lines := tail(path):
                parts.append(f"last lines of {path}:\n" + "\n".join(lines))
        return "; ".join(parts)

    def _timed_out(self) -> str | None:
        return "did not become healthy in time" if time.monotonic() > self.deadline else None

    @property
    def done(self) -> bool:
        return self.completed if self.service.one_shot else self.healthy


# Programs a service's module runs besides Python, and the Debian package that has each.
PROGRAMS = {"services.gateway": ("nginx", "nginx-light")}
# Debian installs daemons in /usr/sbin, which a non-root PATH may lack.
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")


def program_found(program: str) -> bool:
    return bool(shutil.which(program)) or any(Path(d, program).is_file() for d in SBIN_DIRS)


def ensure_programs(services: list[compose_plan.LocalService]) -> None:
    """Install what a service needs with apt-get when it is missing and we are root (as the
    image has it); otherwise ``runnable`` skips the service and says how to get it."""
    for service in services:
        program, package = PROGRAMS.get(service.module, (None, None))
        if program is None or program_found(program):
            continue
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            continue
        print(f"installing {package} with apt-get (the {service.name} service runs {program})")
        quiet = {"stdout": subprocess.DEVNULL, "check": False}
        subprocess.run(["apt-get", "update", "-qq"], **quiet)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
        subprocess.run(install, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, **quiet)


def missing_program(service: compose_plan.LocalService) -> str:
    """Why ``service`` cannot run here ('' if it can)."""
    program, package = PROGRAMS.get(service.module, (None, None))
    if program is None or program_found(program):
        return ""
    return f"{program} is not installed (apt-get install {package}, as root)"


def runnable(services: list[compose_plan.LocalService]) -> tuple[list, list[str]]:
    """Drop services whose module does not exist yet or whose program is missing (and those
    depending on them)."""
    kept, skipped = [], []
    for service in services:
        if not compose_plan.module_exists(service.module):
            print(f"warning: skipping {service.name}: module {service.module} does not exist yet")
            skipped.append(service.name)
        elif reason := missing_program(service):
            print(f"warning: skipping {service.name}: {reason}")
            skipped.append(service.name)
        elif any(dep in skipped for dep in service.depends_on):
            print(f"warning: skipping {service.name}: it depends on a skipped service")
            skipped.append(service.name)
        else:
            kept.append(service)
    return kept, skipped


def up(timeout: float) -> int:
    state = read_state()
    if any(alive(s["pid"]) for s in state.get("services", [])):
        print("The stack is already running (make down stops it):")
        return ps()
    log_dir().mkdir(parents=True, exist_ok=True)
    run_dir().mkdir(parents=True, exist_ok=True)
    redis_url = ensure_redis.find_existing()
    redis_started = not redis_url
    if redis_started:
        redis_url = ensure_redis.start_private()
    print(f"{'redis':<13} {redis_url}{' (started)' if redis_started else ' (reused)'}")
    config = compose_plan.load_config()
    planned = compose_plan.plan_services(config, redis_url, volume_defaults(), os.environ)
    ensure_programs(planned)
    services, skipped = runnable(planned)
    state = {"mode": "local", "redis_started": redis_started, "services": [], "skipped": skipped}
    write_state(state)
    error = start_all(services, state, timeout)
    if error:
        print(error)
        down()
        return 1
    print(f"Logs: {log_dir()}   Check: make test-message   Stop: make down")
    return 0


def start_all(services: list[compose_plan.LocalService], state: dict, timeout: float) -> str:
    """Start services as their dependencies allow, in parallel; '' or what went wrong."""
    pending = list(services)
    launches: dict[str, Launch] = {}
    with ThreadPoolExecutor(max_workers=max(len(services), 1)) as pool:
        while True:
            for service in list(pending):
                if all(
                    dep in launches and launches[dep].satisfies(condition)
                    for dep, condition in service.depends_on.items()
                ):
                    pending.remove(service)
                    launches[service.name] = launch = Launch(service, timeout)
                    state["services"].append(launch.entry())
                    write_state(state)
            waiting = [launch for launch in launches.values() if not launch.done]
            if pending and not waiting:
                names = ", ".join(s.name for s in pending)
                return f"cannot start {names}: their depends_on conditions can never hold"
            for launch, error in zip(waiting, pool.map(Launch.poll, waiting), strict=True):
                if error:
                    return launch.failure(error)
                if launch.done:
                    show = " ".join(launch.service.published) or launch.service.module
                    status = "done" if launch.service.one_shot else "healthy"
                    took = time.monotonic() - launch.started
                    print(
                        f"{launch.service.name:<13} {status:<8} {show}  "
                        f"(pid {launch.proc.pid}, {took:.0f} s)"
                    )
            if not pending and not waiting:
                break
            time.sleep(POLL_SECONDS)
    return ""


def down() -> int:
    state = read_state()
    for entry in reversed(state.get("services", [])):
        stop_pid(entry["pid"])
        (run_dir() / f"{entry['name']}.pid").unlink(missing_ok=True)
        print(f"stopped {entry['name']} (pid {entry['pid']})")
    if state.get("redis_started"):
        ensure_redis.stop_private()
        print("stopped redis")
    state_path().unlink(missing_ok=True)
    return 0


def service_status(entry: dict) -> str:
    if not alive(entry["pid"]):
        return "done" if entry.get("one_shot") else "stopped"
    return "healthy" if entry_healthy(entry) else "starting"


def ps() -> int:
    state = read_state()
    if not state:
        print("The stack is not running.")
        return 0
    entries = state.get("services", [])
    with ThreadPoolExecutor(max_workers=max(len(entries), 1)) as pool:
        statuses = list(pool.map(service_status, entries))
    for entry, status in zip(entries, statuses, strict=True):
        show = " ".join(entry.get("urls") or []) or entry["module"]
        print(f"{entry['name']:<13} {status:<8} pid={entry['pid']:<8} {show}")
    for name in state.get("skipped", []):
        print(f"{name:<13} skipped  (its module or a program it runs is missing)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "ps"])
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("STACK_TIMEOUT", "180")),
        help="seconds each service may take to become healthy ($STACK_TIMEOUT)",
    )
    args = parser.parse_args(argv)
    CommonSettings()  # fail early on malformed environment
    if args.command == "up":
        try:
            return up(args.timeout)
        except compose_plan.ComposeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            down()
            return 1
    if args.command == "down":
        return down()
    return ps()


if __name__ == "__main__":
    sys.exit(main())
