"""The controller's view of its model workers: who serves what (the registry in Redis), an HTTP
client to reach them, and the settings that time those calls. No routes here."""

from __future__ import annotations

import asyncio
import logging

import httpx
from pydantic import ValidationError

from services.controller.registry import DispatchMethod, WorkerRegistry
from shared.constants import ErrorCode
from shared.http_errors import APIError
from shared.schemas import WorkerStatus
from shared.settings import ControllerSettings

log = logging.getLogger(__name__)


class Controller:
    """What the worker-protocol routes need: the registry, an HTTP client for workers, and
    the settings."""

    def __init__(
        self, registry: WorkerRegistry, client: httpx.AsyncClient, settings: ControllerSettings
    ) -> None:
        self.registry = registry
        self.client = client
        self.settings = settings

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
        except (httpx.HTTPError, ValidationError, ValueError) as exc:
            log.warning("event=status_poll_failed worker=%s error=%r", worker, exc)
            return None

    async def refresh(self) -> None:
        """Ask every registered worker for its status; drop those that do not answer."""
        workers = await self.registry.workers()
        statuses = await asyncio.gather(*(self.fetch_status(name) for name in workers))
        for (name, info), status in zip(workers.items(), statuses, strict=True):
            if status is None:
                await self.registry.remove(name)
            else:
                await self.registry.register(name, status, info.check_heart_beat, info.multimodal)

    async def worker_for(self, model: str) -> str:
        address = await self.registry.pick_worker(model, self.dispatch_method)
        if address is None:
            raise APIError(
                404,
                f"No worker is serving model '{model}'.",
                ErrorCode.CONTROLLER_NO_WORKER,
                "model",
            )
        return address
