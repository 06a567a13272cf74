"""The pool's supervision: one synchronous pass (``step``) over the deployment records.

Each pass renews the pool's heartbeat, then for every record: starts a worker for a pending one
(while under ``max_models``), removes an undeploying one, and hands back to ``pending`` a
deployment whose pool is gone (its heartbeat expired). Then it watches its own workers: one that
answers its status with the pool's worker token (as the controller will ask it) is ``deployed``;
one that refuses the token, exited or did not load in time is ``failed`` with the reason.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import time
from typing import Any

import httpx

from services.model_pool.children import Child, WorkerLaunch, worker_command, worker_environment
from services.model_pool.ports import first_free_port, parse_port_range
from shared.auth import bearer_header
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
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import AuthSettings, CommonSettings, PoolSettings

log = logging.getLogger(__name__)

# Fields that say no pool holds a deployment (any more).
_RELEASED: dict[str, Any] = {"pool": None, "worker_address": None}


class ModelPool:
    """The supervision logic; ``step`` is one synchronous pass over the records."""

    def __init__(
        self,
        settings: PoolSettings,
        common: CommonSettings,
        controller_address: str,
        python: str = sys.executable,
        auth: AuthSettings | None = None,
    ) -> None:
        """``auth``: credentials for its workers (None: AuthSettings from the environment)."""
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
        auth = auth or AuthSettings()
        self._worker_env = worker_environment(auth)
        self._http = httpx.Client(timeout=2.0, headers=bearer_header(auth.worker_token))

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

    def _fail(self, name: str, code: str, message: str) -> None:
        self._set(
            name, self.name, status=FAILED, **_RELEASED, error={"code": code, "message": message}
        )

    def _pool_alive(self, pool: str) -> bool:
        return bool(self._redis.exists(pool_heartbeat_key(self._keys, pool)))

    # --- one pass ----------------------------------------------------------------------------
    def step(self) -> None:
        self._redis.set(
            pool_heartbeat_key(self._keys, self.name), "1", px=int(POOL_HEARTBEAT_SECONDS * 1000)
        )
        for name, record in self._records().items():
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
            if self._set(name, holder, status=PENDING, **_RELEASED):
                log.info("event=deployment_orphaned model=%s pool=%s", name, holder)
        elif status in HELD_STATES and holder == self.name and name not in self.children:
            self._set(name, self.name, status=PENDING, **_RELEASED)

    # --- starting and watching workers -------------------------------------------------------
    def _claim(self, name: str) -> bool:
        """Take a pending record for this pool; False if another pool was faster or it was
        undeployed meanwhile."""
        claimed = self.store.update_if(
            name,
            lambda r: r["status"] == PENDING and r.get("pool") is None,
            status=LOADING,
            pool=self.name,
            error=None,
            updated_at=int(time.time()),
        )
        return claimed is not None

    def _start(self, name: str, record: dict[str, Any]) -> None:
        taken = {child.port for child in self.children.values()}
        port = first_free_port(self.settings.host, self._ports, taken)
        if port is None:
            log.warning("event=pool_no_free_port model=%s range=%s", name, self.settings.port_range)
            return
        if not self._claim(name):
            return
        launch = WorkerLaunch(
            self.settings.host, port, self._worker_address(port), self.controller_address
        )
        extra = shlex.split(self.settings.worker_args)
        command = worker_command(self._python, name, record, launch, extra)
        # The worker's own daily log is pool-worker-<name>.log (LOG_NAME); its raw output (the
        # error line of a failed start among it) goes to .out, read back by failure_reason.
        output = self.log_dir / f"pool-worker-{name}.out"
        env = {**self._worker_env, "LOG_NAME": f"pool-worker-{name}"}
        self.children[name] = Child.spawn(name, port, command, output, env)
        log.info("event=model_loading model=%s port=%d path=%s", name, port, record["path"])

    def _worker_address(self, port: int) -> str:
        return f"http://{self.advertise_host}:{port}"

    def _probe(self, child: Child) -> int | None:
        """The status code of the worker's ``/worker_get_status``; None while it does not
        listen yet."""
        try:
            return self._http.post(f"http://127.0.0.1:{child.port}/worker_get_status").status_code
        except httpx.HTTPError:
            return None

    def _watch_child(self, name: str, record: dict[str, Any] | None) -> None:
        child = self.children[name]
        if record is None or record.get("pool") != self.name:
            self._stop_child(name)
        elif not child.alive:
            self.children.pop(name)
            reason = f"the model worker exited with code {child.process.returncode}"
            tail = child.failure_reason()
            self._fail(name, "worker_exited", f"{reason}: {tail}" if tail else reason)
            log.error("event=deployment_failed model=%s reason=%r", name, reason)
        elif record["status"] == LOADING:
            self._watch_loading(name, child)

    def _watch_loading(self, name: str, child: Child) -> None:
        answer = self._probe(child)
        if answer == 200:
            address = self._worker_address(child.port)
            self._set(name, self.name, status=DEPLOYED, worker_address=address)
            log.info("event=model_deployed model=%s port=%d", name, child.port)
        elif answer == 401:
            self._stop_child(name)
            message = (
                "the model worker answered 401 to the pool: set WORKER_TOKEN for the pool, which "
                "hands it to its workers and sends it to them"
            )
            self._fail(name, "worker_refused_credentials", message)
        elif time.monotonic() - child.started_at > self.settings.load_timeout:
            self._stop_child(name)
            timeout = self.settings.load_timeout
            self._fail(name, "load_timeout", f"the model did not load within {timeout} s")

    def _stop_child(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is not None:
            child.stop()

    # --- the end ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every worker; their deployments go back to pending to be served again later."""
        for name in list(self.children):
            self._stop_child(name)
            self._set(name, self.name, status=PENDING, **_RELEASED)
        self._redis.delete(pool_heartbeat_key(self._keys, self.name))
        self._http.close()

    def describe(self) -> dict[str, Any]:
        return {
            "pool": self.name,
            "max_models": self.settings.max_models,
            "models": {
                name: {"port": c.port, "pid": c.process.pid, "alive": c.alive}
                for name, c in self.children.items()
            },
        }
