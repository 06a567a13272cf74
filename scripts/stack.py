"""Run the stack as local processes: ``python scripts/stack.py up|down|ps``.

``up`` makes sure Redis answers (starting a private one if none does), converts the default model
once, starts the controller, one model worker and the web chat, waits until each is healthy, and
prints the URLs. ``down`` stops exactly the processes ``up`` started. Logs go to logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ensure_redis  # noqa: E402  (sibling script)

from services.model_worker.default_model import is_converted  # noqa: E402
from shared.settings import (  # noqa: E402
    CommonSettings,
    ControllerSettings,
    WebUISettings,
    WorkerSettings,
    default_model_dir,
)

RUN_DIR = ensure_redis.RUN_DIR
STATE = RUN_DIR / "stack.json"
LOG_DIR = CommonSettings().log_dir


@dataclass
class Service:
    name: str
    module: str
    args: list[str]
    health_url: str
    public_url: str


def plan(redis_url: str) -> tuple[list[Service], dict[str, str]]:
    controller, worker, webui = ControllerSettings(), WorkerSettings(), WebUISettings()
    controller_url = f"http://127.0.0.1:{controller.port}"
    worker_url = worker.address or f"http://127.0.0.1:{worker.port}"
    model_path = worker.model_path or str(default_model_dir())
    env = {"REDIS_URL": redis_url, "CONTROLLER_ADDRESS": controller_url, "HF_HUB_OFFLINE": "1"}
    services = [
        Service(
            "controller",
            "services.controller",
            ["--host", controller.host, "--port", str(controller.port)],
            f"{controller_url}/health",
            controller_url,
        ),
        Service(
            "model_worker",
            "services.model_worker",
            ["--host", worker.host, "--port", str(worker.port), "--model-path", model_path],
            f"{worker_url}/health",
            worker_url,
        ),
        Service(
            "webui",
            "services.webui",
            ["--host", webui.host, "--port", str(webui.port)],
            f"http://127.0.0.1:{webui.port}/",
            f"http://{webui.host}:{webui.port}/",
        ),
    ]
    return services, env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def read_state() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)


def up(timeout: float) -> int:
    state = read_state()
    if any(alive(s["pid"]) for s in state.get("services", [])):
        print("The stack is already running (make down stops it):")
        return ps()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    redis_url = ensure_redis.find_existing()
    redis_started = not redis_url
    if redis_started:
        redis_url = ensure_redis.start_private()
    print(f"redis         {redis_url}{' (started)' if redis_started else ' (reused)'}")
    if not WorkerSettings().model_path and not is_converted(default_model_dir()):
        print("model       converting the default model once (about 30 s) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "services.model_worker.default_model"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    services, env = plan(redis_url)
    state = {"redis_started": redis_started, "services": []}
    for service in services:
        log = (LOG_DIR / f"{service.name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", service.module, *service.args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        state["services"].append(
            {
                "name": service.name,
                "pid": proc.pid,
                "health": service.health_url,
                "url": service.public_url,
            }
        )
        STATE.write_text(json.dumps(state, indent=2))
        deadline = time.monotonic() + timeout
        while not healthy(service.health_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                print(
                    f"{service.name} failed to start; last lines of {LOG_DIR}/{service.name}.log:"
                )
                lines = (LOG_DIR / f"{service.name}.log").read_text(errors="replace")
                print("\n".join(lines.splitlines()[-30:]))
                down()
                return 1
            time.sleep(0.5)
        print(f"{service.name:<13} {service.public_url}  (pid {proc.pid})")
    print(f"Logs: {LOG_DIR}   Check: make test-message   Stop: make down")
    return 0


def down() -> int:
    state = read_state()
    for service in reversed(state.get("services", [])):
        stop_pid(service["pid"])
        print(f"stopped {service['name']} (pid {service['pid']})")
    if state.get("redis_started"):
        ensure_redis.stop_private()
        print("stopped redis")
    STATE.unlink(missing_ok=True)
    return 0


def ps() -> int:
    state = read_state()
    if not state:
        print("The stack is not running.")
        return 0
    for service in state["services"]:
        status = (
            "healthy"
            if healthy(service["health"])
            else ("running" if alive(service["pid"]) else "stopped")
        )
        print(f"{service['name']:<13} {status:<8} pid={service['pid']:<8} {service['url']}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "ps"])
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per service")
    args = parser.parse_args()
    CommonSettings()  # fail early on malformed environment
    if args.command == "up":
        return up(args.timeout)
    if args.command == "down":
        return down()
    return ps()


if __name__ == "__main__":
    sys.exit(main())
