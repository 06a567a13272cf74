"""The controller's view of its model workers: who serves what (the registry in Redis), an HTTP
client to reach them (it sends the worker token on every call), and the settings that time those
calls. No routes here."""

from __future__ import annotations

import asyncio
import logging

import httpx
from pydantic import ValidationError

from services.controller.failover import Failover
from services.controller.registry import DispatchMethod, WorkerRegistry
from shared.constants import ErrorCode
from shared.http_errors import APIError
from shared.schemas import WorkerStatus
from shared.settings import ControllerSettings

log = logging.getLogger(__name__)

# How often a worker that registered before answering (FastChat's model_worker) is polled.
PENDING_POLL_SECONDS = 0.5


class Controller:
    """What the worker-protocol routes need: the registry, an HTTP client for workers, the
    failover policy, and the settings."""

    def __init__(
        self, registry: WorkerRegistry, client: httpx.AsyncClient, settings: ControllerSettings
    ) -> None:
        self.registry = registry
        self.client = client
        self.settings = settings
        self.failover = Failover(registry, settings.dispatch_method, settings.worker_retries)
        self._confirming: set[asyncio.Task] = set()

    @property
    def dispatch_method(self) -> DispatchMethod:
        return self.settings.dispatch_method

    async def fetch_status(self, worker: str) -> WorkerStatus | None:
        try:
            response = await self.client.post(
                f"{worker}/worker_get_status", timeout=self.settings.worker_status_timeout
            )
            response.raise_for_status()
            return WorkerStatus.model_validate(response.json())
        except (httpx.HTTPError, httpx.InvalidURL, ValidationError, ValueError) as exc:
            log.warning("event=status_poll_failed worker=%s error=%r", worker, exc)
            return None

    async def admit(
        self,
        worker: str,
        check_heart_beat: bool,
        multimodal: bool,
        claimed: WorkerStatus | None = None,
    ) -> None:
        """Register ``worker`` with the status it answers itself at its address; one that does
        not answer is refused (400 naming ``worker_name``: the caller named an unusable address).

        Except when the body carries a status (``claimed``), as FastChat's model_worker sends: it
        registers before its HTTP server listens. The address is then held with no models (not
        routable) and confirmed from the worker itself once it answers (``_confirm``); the
        claimed models are never served from."""
        status = await self.fetch_status(worker)
        if status is None and claimed is not None:
            pending = WorkerStatus(model_names=[], speed=claimed.speed)
            await self.registry.register(worker, pending, check_heart_beat, multimodal)
            task = asyncio.create_task(self._confirm(worker, check_heart_beat, multimodal))
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)
            return
        if status is None:
            raise APIError(
                400,
                f"worker_name: {worker} did not answer POST /worker_get_status with its status; "
                "not registered.",
                ErrorCode.CONTROLLER_WORKER_TIMEOUT,
                "worker_name",
            )
        await self.registry.register(worker, status, check_heart_beat, multimodal)

    async def _confirm(self, worker: str, check_heart_beat: bool, multimodal: bool) -> None:
        """Poll a pending worker's own status for ``pending_worker_grace`` seconds; register
        what it answers, or drop it."""
        deadline = asyncio.get_running_loop().time() + self.settings.pending_worker_grace
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(PENDING_POLL_SECONDS)
            status = await self.fetch_status(worker)
            if status is not None:
                await self.registry.register(worker, status, check_heart_beat, multimodal)
                log.info("event=worker_confirmed worker=%s", worker)
                return
        log.warning("event=worker_never_answered worker=%s", worker)
        await self.registry.remove(worker)

    async def refresh(self) -> None:
        """Ask every registered worker for its status; drop those that do not answer."""
        workers = await self.registry.workers()
        statuses = await asyncio.gather(*(self.fetch_status(name) for name in workers))
        for (name, info), status in zip(workers.items(), statuses, strict=True):
            if status is None:
                await self.registry.remove(name)
            else:
                await self.registry.register(name, status, info.check_heart_beat, info.multimodal)
