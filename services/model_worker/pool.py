"""The model pool: serves deployed models on demand, one model worker process per model.

``python -m services.model_worker.pool`` runs a supervisor that watches the deployment records
in Redis (see ``shared/deployments.py``). For a pending deployment it claims the record, starts
``python -m services.model_worker`` on a free port of its range, and marks the record deployed
once the worker answers (the worker registers itself with the controller, so the model appears in
``/list_models`` and ``/v1/models``). Undeploying stops the worker, which unregisters itself.

A worker per process keeps each model's memory apart and reuses the worker unchanged; the
children die with the pool (PR_SET_PDEATHSIG), and on a clean stop their deployments go back to
pending, so they are served again when a pool starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from shared.deployments import (
    DEPLOYED,
    DEPLOYMENT_KIND,
    FAILED,
    HELD_STATES,
    LOADING,
    PENDING,
    POOL_HEARTBEAT_SECONDS,
    UNDEPLOYING,
    pool_heartbeat_key,
)
from shared.job_records import RecordStore
from shared.logging_setup import configure_logging
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings, PoolSettings

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0
LOG_TAIL_CHARS = 600


def parse_port_range(text: str) -> list[int]:
    """``"21100-21199"`` -> the ports in it; a clear ValueError for anything else."""
    try:
        first, last = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise ValueError(f"port range must look like 21100-21199, not {text!r}") from None
    if not 0 < first <= last < 65536:
        raise ValueError(f"port range {text!r} is empty or outside 1-65535")
    return list(range(first, last + 1))


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when the pool dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    """One model worker started by the pool."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    def failure_reason(self) -> str:
        """The worker's own error message (its last ``error:`` line on), else its log's end."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        start = text.rfind("\nerror: ")
        if start >= 0:
            return text[start + 1 :].strip()[:LOG_TAIL_CHARS]
        return text.strip()[-LOG_TAIL_CHARS:]


class ModelPool:
    """The supervision logic; ``step`` is one synchronous pass over the records."""

    def __init__(
        self,
        settings: PoolSettings,
        common: CommonSettings,
        controller_address: str,
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self.controller_address = controller_address
        self.name = settings.name or f"{socket.gethostname()}:{os.getpid()}"
        self.advertise_host = settings.advertise_host or settings.host
        self.log_dir = common.log_dir
        self._python = python
        self._redis = sync_redis(common.redis_url)
        self._keys = RedisKeys(common.redis_key_prefix)
        self.store = RecordStore(self._redis, self._keys, DEPLOYMENT_KIND)
        self.children: dict[str, Child] = {}
        self._ports = parse_port_range(settings.port_range)
        self._http = httpx.Client(timeout=2.0)

    # --- records ---------------------------------------------------------------------------
    def _records(self) -> dict[str, dict[str, Any]]:
        records, _ = self.store.list(limit=10_000)
        return {r["id"]: r for r in records}

    def _set(self, name: str, expect_pool: str | None, **fields: Any) -> dict[str, Any] | None:
        """Update a record only while it is still held by ``expect_pool`` and not undeploying."""
        fields["updated_at"] = int(time.time())
        return self.store.update_if(
            name,
            lambda r: r.get("pool") == expect_pool and r["status"] != UNDEPLOYING,
            **fields,
        )

    def _pool_alive(self, pool: str) -> bool:
        return bool(self._redis.exists(pool_heartbeat_key(self._keys, pool)))

    # --- one pass -----------------------------------------------------------------------------
    def step(self) -> None:
        self._redis.set(
            pool_heartbeat_key(self._keys, self.name), "1", px=int(POOL_HEARTBEAT_SECONDS * 1000)
        )
        records = self._records()
        for name, record in records.items():
            self._look_at(name, record)
        records = self._records()  # as changed by the claims just made
        for name in list(self.children):
            self._watch_child(name, records.get(name))

    def _look_at(self, name: str, record: dict[str, Any]) -> None:
        status, holder = record["status"], record.get("pool")
        if status == UNDEPLOYING:
            if holder == self.name or holder is None or not self._pool_alive(holder):
                self._stop_child(name)
                self.store.delete(name)
                log.info("event=model_undeployed model=%s", name)
        elif status == PENDING:
            if name not in self.children and len(self.children) < self.settings.max_models:
                self._start(name, record)
        elif status in HELD_STATES and holder != self.name and not self._pool_alive(holder or ""):
            # Its pool is gone: hand the model to whichever pool looks first.
            if self._set(name, holder, status=PENDING, pool=None, worker_address=None):
                log.info("event=deployment_orphaned model=%s pool=%s", name, holder)
        elif status in HELD_STATES and holder == self.name and name not in self.children:
            self._set(name, self.name, status=PENDING, pool=None, worker_address=None)

    def _free_port(self) -> int | None:
        used = {child.port for child in self.children.values()}
        for port in self._ports:
            if port in used:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind((self.settings.host, port))
                except OSError:
                    continue
            return port
        return None

    def _start(self, name: str, record: dict[str, Any]) -> None:
        port = self._free_port()
        if port is None:
            log.warning("event=pool_no_free_port model=%s range=%s", name, self.settings.port_range)
            return
        claimed = self.store.update_if(
            name,
            lambda r: r["status"] == PENDING and r.get("pool") is None,
            status=LOADING,
            pool=self.name,
            error=None,
            updated_at=int(time.time()),
        )
        if claimed is None:
            return  # another pool was faster, or it was undeployed meanwhile
        address = f"http://{self.advertise_host}:{port}"
        command = [
            self._python,
            "-m",
            "services.model_worker",
            "--model-path",
            record["path"],
            "--model-names",
            name,
            "--host",
            self.settings.host,
            "--port",
            str(port),
            "--worker-address",
            address,
            "--controller-address",
            self.controller_address,
        ]
        if record.get("conv_template"):
            command += ["--conv-template", record["conv_template"]]
        command += shlex.split(self.settings.worker_args)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"pool-worker-{name}.log"
        with log_path.open("ab") as sink:
            process = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        self.children[name] = Child(name, port, process, log_path)
        log.info("event=model_loading model=%s port=%d path=%s", name, port, record["path"])

    def _answers(self, child: Child) -> bool:
        try:
            return self._http.get(f"http://127.0.0.1:{child.port}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def _watch_child(self, name: str, record: dict[str, Any] | None) -> None:
        child = self.children[name]
        if record is None or record.get("pool") != self.name:
            self._stop_child(name)
            return
        if child.process.poll() is not None:
            self.children.pop(name)
            reason = f"the model worker exited with code {child.process.returncode}"
            tail = child.failure_reason()
            self._set(
                name,
                self.name,
                status=FAILED,
                pool=None,
                worker_address=None,
                error={"code": "worker_exited", "message": f"{reason}: {tail}" if tail else reason},
            )
            log.error("event=deployment_failed model=%s reason=%r", name, reason)
            return
        if record["status"] == LOADING:
            if self._answers(child):
                self._set(
                    name,
                    self.name,
                    status=DEPLOYED,
                    worker_address=f"http://{self.advertise_host}:{child.port}",
                )
                log.info("event=model_deployed model=%s port=%d", name, child.port)
            elif time.monotonic() - child.started_at > self.settings.load_timeout:
                self._stop_child(name)
                self._set(
                    name,
                    self.name,
                    status=FAILED,
                    pool=None,
                    error={
                        "code": "load_timeout",
                        "message": f"the model did not load within {self.settings.load_timeout} s",
                    },
                )

    def _stop_child(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is None:
            return
        if child.process.poll() is None:
            child.process.terminate()  # the worker unregisters itself on SIGTERM
            try:
                child.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        log.info("event=model_worker_stopped model=%s port=%d", name, child.port)

    def shutdown(self) -> None:
        """Stop every worker; their deployments go back to pending to be served again later."""
        for name in list(self.children):
            self._stop_child(name)
            self._set(name, self.name, status=PENDING, pool=None, worker_address=None)
        self._redis.delete(pool_heartbeat_key(self._keys, self.name))
        self._http.close()

    def describe(self) -> dict[str, Any]:
        return {
            "pool": self.name,
            "max_models": self.settings.max_models,
            "models": {
                name: {"port": c.port, "pid": c.process.pid, "alive": c.process.poll() is None}
                for name, c in self.children.items()
            },
        }


def create_app(pool: ModelPool) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stopping = asyncio.Event()

        async def supervise() -> None:
            while not stopping.is_set():
                try:
                    await asyncio.to_thread(pool.step)
                except Exception:  # Redis away for a moment: try again next pass
                    log.exception("event=pool_step_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), pool.settings.poll_interval)

        task = asyncio.create_task(supervise())
        log.info("event=pool_started pool=%s ports=%s", pool.name, pool.settings.port_range)
        try:
            yield
        finally:
            stopping.set()
            await task
            await asyncio.to_thread(pool.shutdown)

    app = FastAPI(title="camel-chat model pool", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **pool.describe()}

    return app


def main(argv: list[str] | None = None) -> None:
    common, settings = CommonSettings(), PoolSettings()
    parser = argparse.ArgumentParser(description="camel-chat model pool (serves deployed models)")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--port-range", default=settings.port_range)
    parser.add_argument("--advertise-host", default=settings.advertise_host)
    parser.add_argument("--max-models", type=int, default=settings.max_models)
    parser.add_argument("--name", default=settings.name)
    parser.add_argument("--controller-address", default=common.controller_address)
    parser.add_argument(
        "--worker-args", default=settings.worker_args, help="extra flags for each model worker"
    )
    args = parser.parse_args(argv)
    configure_logging("model_pool", common.log_level)
    try:
        parse_port_range(args.port_range)
    except ValueError as exc:
        parser.error(f"--port-range: {exc}")
    if args.max_models < 1:
        parser.error("--max-models: must be at least 1")
    settings = settings.model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "port_range": args.port_range,
            "advertise_host": args.advertise_host,
            "max_models": args.max_models,
            "name": args.name,
            "worker_args": args.worker_args,
        }
    )
    pool = ModelPool(settings, common, args.controller_address)
    uvicorn.run(create_app(pool), host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()
