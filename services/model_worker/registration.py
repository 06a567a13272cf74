"""Registration with the controller and the heartbeat loop.

The worker registers under its address with its status (``POST /register_worker``), then sends
its queue length every heartbeat interval (``POST /receive_heart_beat``) so the controller keeps
routing to it, and unregisters on a clean stop (``POST /unregister_worker``).

Unlike the original, a controller that is down at start-up is retried instead of crashing the
worker, and a controller that forgot the worker (restart with a new Redis, expiry) gets a fresh
registration on the next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from shared.schemas import WorkerStatus

log = logging.getLogger(__name__)


class ControllerLink:
    def __init__(
        self,
        client: httpx.AsyncClient,
        controller_address: str,
        worker_address: str,
        status: Callable[[], WorkerStatus],
        interval: float,
    ) -> None:
        self._client = client
        self._controller = controller_address.rstrip("/")
        self.worker_address = worker_address
        self._status = status
        self._interval = interval
        self.registered = False

    async def register(self) -> bool:
        body = {
            "worker_name": self.worker_address,
            "check_heart_beat": True,
            "worker_status": self._status().model_dump(),
        }
        try:
            response = await self._client.post(
                f"{self._controller}/register_worker", json=body, timeout=5.0
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("event=register_failed controller=%s error=%r", self._controller, exc)
            return False
        log.info("event=registered controller=%s worker=%s", self._controller, self.worker_address)
        return True

    async def heartbeat(self) -> bool | None:
        """True/False: the controller knows us or not; None: it could not be reached."""
        body = {
            "worker_name": self.worker_address,
            "queue_length": self._status().queue_length,
        }
        try:
            response = await self._client.post(
                f"{self._controller}/receive_heart_beat", json=body, timeout=5.0
            )
            response.raise_for_status()
            return bool(response.json()["exist"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("event=heartbeat_failed controller=%s error=%r", self._controller, exc)
            return None

    async def unregister(self) -> None:
        """Leave routing at once on a clean shutdown (best effort: expiry covers a crash)."""
        try:
            await self._client.post(
                f"{self._controller}/unregister_worker",
                json={"worker_name": self.worker_address},
                timeout=2.0,
            )
        except httpx.HTTPError as exc:
            log.warning("event=unregister_failed controller=%s error=%r", self._controller, exc)

    async def run(self) -> None:
        while True:
            if not self.registered:
                self.registered = await self.register()
            else:
                exist = await self.heartbeat()
                if exist is False:
                    log.info("event=controller_forgot_worker worker=%s", self.worker_address)
                    self.registered = await self.register()
            await asyncio.sleep(self._interval)
