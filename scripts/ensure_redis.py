"""Make sure a Redis answers, for ``make test`` and ``make up``.

Order: $REDIS_URL if it answers; else 127.0.0.1:6379; else (``--start``) a private
``redis-server`` on a free port, recorded in run/redis.json so that ``--stop`` stops exactly it.
redis-server is installed with apt when missing and running as root.

Prints the URL to use (empty when none answers and ``--start`` was not given).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
# Where process state of the local stack lives; tests point it elsewhere.
RUN_DIR = Path(os.environ.get("STACK_RUN_DIR", ROOT / "run"))
STATE = RUN_DIR / "redis.json"
LOCAL_URL = "redis://127.0.0.1:6379/0"


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except (redis.RedisError, ValueError):
        return False


def ensure_redis_server_installed() -> str:
    server = shutil.which("redis-server")
    if server:
        return server
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("redis-server is not installed; install it (apt-get install redis-server)")
    print("installing redis-server with apt-get ...", file=sys.stderr)
    quiet = {
        "stdout": subprocess.DEVNULL,
        "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    }
    subprocess.run(["apt-get", "update", "-q"], check=True, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], check=True, **quiet)
    return shutil.which("redis-server") or sys.exit("redis-server still missing after apt-get")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_private() -> str:
    server = ensure_redis_server_installed()
    port = free_port()
    STATE.parent.mkdir(parents=True, exist_ok=True)
    logs = Path(os.environ.get("LOG_DIR", ROOT / "logs"))
    logs.mkdir(parents=True, exist_ok=True)
    pidfile = STATE.parent / "redis.pid"
    subprocess.run(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--dir",
            str(STATE.parent),
            "--logfile",
            str(logs / "redis.log"),
        ],
        check=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not answers(url):
        if time.monotonic() > deadline:
            sys.exit(f"started redis-server on port {port} but it does not answer")
        time.sleep(0.1)
    pid = int(pidfile.read_text().strip())
    STATE.write_text(json.dumps({"url": url, "pid": pid}))
    return url


def find_existing() -> str:
    env_url = os.environ.get("REDIS_URL", "")
    if env_url and answers(env_url):
        return env_url
    if STATE.exists():
        url = json.loads(STATE.read_text())["url"]
        if answers(url):
            return url
    if answers(LOCAL_URL):
        return LOCAL_URL
    return ""


def stop_private() -> None:
    if not STATE.exists():
        return
    state = json.loads(STATE.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(state["pid"], 15)
    STATE.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--start", action="store_true", help="start a private server if needed")
    group.add_argument("--stop", action="store_true", help="stop the private server we started")
    args = parser.parse_args()
    if args.stop:
        stop_private()
        return
    url = find_existing()
    if not url:
        # The test suite starts its own private server on a free port when given none.
        url = start_private() if args.start else (ensure_redis_server_installed() and "")
    print(url)


if __name__ == "__main__":
    main()
