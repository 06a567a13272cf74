"""Worker registry kept in Redis, so that several controllers share it and restarts lose nothing.

Each worker is a Redis hash that expires ``expiration`` seconds after its last heartbeat, so a
worker that stops heartbeating leaves routing by itself; no sweeper thread is needed. Every worker
expires so, whatever its registration's ``check_heart_beat`` said (FastChat let a worker opt out,
which kept a dead or fake worker routable for ever).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Collection
from typing import Literal

from redis.asyncio import Redis

from shared.redis_keys import RedisKeys
from shared.schemas import WorkerInfo, WorkerStatus

log = logging.getLogger(__name__)

DispatchMethod = Literal["lottery", "shortest_queue"]

# A worker's self-reported speed weighs dispatch; bounded so that none can claim all the traffic.
MIN_SPEED, MAX_SPEED = 0.1, 10.0

# Update a worker's hash only if it still exists (a plain HSET would resurrect an expired worker
# as a hash without TTL). KEYS[1] = worker hash; ARGV = field, value, [field, value...], ttl_ms.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ttl = tonumber(ARGV[#ARGV])
for i = 1, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""

_INCREMENT_QUEUE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'queue_length', 1)
return 1
"""


def _decode_worker(name: str, fields: dict[str, str]) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        model_names=json.loads(fields.get("model_names", "[]")),
        speed=float(fields.get("speed", 1.0)),
        queue_length=int(fields.get("queue_length", 0)),
        check_heart_beat=fields.get("check_heart_beat", "1") == "1",
        last_heart_beat=float(fields.get("last_heart_beat", 0.0)),
        registered_at=float(fields.get("registered_at", 0.0)),
        multimodal=fields.get("multimodal", "0") == "1",
    )


class WorkerRegistry:
    """Registration, heartbeats, listing and dispatch over a shared Redis.

    Dispatch (``pick_worker``) reads the workers from a view of the registry that a background
    task reads again every ``routing_refresh`` seconds (from the first pick on); a pick reads it
    itself only when it is older than ``expiration`` or names no worker for the model. Reading
    Redis on every request cost three round trips before the request could go to its worker;
    on one event loop, a burst of N requests then reached the workers only after all N had done
    their reads, so every request's first token waited on the whole burst. Registrations and
    removals made through this registry change the view at once; those made through another
    controller show within ``routing_refresh`` (a worker that is gone by then is failed over
    from). ``routing_refresh`` 0 reads Redis on every pick.
    """

    def __init__(
        self, redis: Redis, keys: RedisKeys, expiration: float, routing_refresh: float = 0.0
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._expiration = expiration
        self._ttl_ms = max(1, int(expiration * 1000))
        self._update_script = redis.register_script(_UPDATE_IF_EXISTS)
        self._increment_script = redis.register_script(_INCREMENT_QUEUE_IF_EXISTS)
        self._routing_refresh = routing_refresh
        self._view: dict[str, WorkerInfo] | None = None
        self._view_read_at = 0.0
        self._view_reading: asyncio.Future[dict[str, WorkerInfo]] | None = None
        # Changes made here since a read started make that read's result stale.
        self._view_changes = 0
        self._background: set[asyncio.Future[object]] = set()
        self._refresher: asyncio.Future[None] | None = None

    async def register(
        self,
        name: str,
        status: WorkerStatus,
        check_heart_beat: bool = True,
        multimodal: bool = False,
    ) -> bool:
        """Store a worker (its speed bounded to [MIN_SPEED, MAX_SPEED]); returns True when it was
        not registered before. ``check_heart_beat`` is kept for listings only: the worker expires
        without heartbeats all the same."""
        key = self._keys.worker(name)
        now = time.time()
        existed = bool(await self._redis.exists(key))
        mapping = {
            "model_names": json.dumps(status.model_names),
            "speed": min(max(status.speed, MIN_SPEED), MAX_SPEED),
            "queue_length": status.queue_length,
            "check_heart_beat": "1" if check_heart_beat else "0",
            "multimodal": "1" if multimodal else "0",
            "last_heart_beat": now,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.hsetnx(key, "registered_at", now)
            pipe.pexpire(key, self._ttl_ms)
            pipe.sadd(self._keys.workers, name)
            # Models seen served: later requests for them get 503 (retry), not 404, while no
            # worker is up (see the OpenAI API's KnownModels).
            if status.model_names:
                pipe.zadd(self._keys.known_models, dict.fromkeys(status.model_names, now))
            await pipe.execute()
        self._view = None
        self._view_changed()
        log.info(
            "event=register_worker worker=%s models=%s new=%s",
            name,
            status.model_names,
            not existed,
        )
        return not existed

    async def heartbeat(self, name: str, queue_length: int) -> bool:
        """Refresh a worker's liveness; False means it is unknown and must re-register."""
        found = await self._update_script(
            keys=[self._keys.worker(name)],
            args=["queue_length", queue_length, "last_heart_beat", time.time(), self._ttl_ms],
        )
        return bool(found)

    async def remove(self, name: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.worker(name))
            pipe.srem(self._keys.workers, name)
            await pipe.execute()
        if self._view is not None:
            self._view.pop(name, None)
        self._view_changed()
        log.info("event=remove_worker worker=%s", name)

    async def workers(self) -> dict[str, WorkerInfo]:
        """All live workers; names whose hash expired are dropped from the index."""
        names = sorted(await self._redis.smembers(self._keys.workers))
        if not names:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self._keys.worker(name))
            rows = await pipe.execute()
        live: dict[str, WorkerInfo] = {}
        expired: list[str] = []
        for name, fields in zip(names, rows, strict=True):
            if fields:
                live[name] = _decode_worker(name, fields)
            else:
                expired.append(name)
        if expired:
            await self._redis.srem(self._keys.workers, *expired)
            log.info("event=expire_workers workers=%s", expired)
        return live

    async def models(self) -> list[str]:
        workers = await self.workers()
        return sorted({m for w in workers.values() for m in w.model_names})

    async def workers_for_model(self, model: str) -> list[WorkerInfo]:
        return [w for w in (await self.workers()).values() if model in w.model_names]

    async def pick_worker(
        self, model: str, method: DispatchMethod, exclude: Collection[str] = ()
    ) -> str | None:
        """Choose a worker for ``model`` other than those in ``exclude`` (tried already); None
        when no such live worker serves it."""
        if self._routing_refresh <= 0:
            workers, fresh = await self.workers(), True
        else:
            workers, fresh = await self._routing_view()
        best = _choose(workers, model, method, exclude)
        if best is None and not fresh:
            # The view may predate the worker (registered through another controller).
            best = _choose(await self._read_view(), model, method, exclude)
        if best is None or method == "lottery":
            return None if best is None else best.name
        # Count the request against the worker until its next heartbeat reports the truth,
        # so a burst of requests spreads over workers instead of piling on one.
        increment = self._increment_script(keys=[self._keys.worker(best.name)], args=[])
        if self._routing_refresh <= 0:
            await increment
        else:
            best.queue_length += 1  # in this controller's view at once; in Redis for the others
            self._in_background(increment, "count_request")
        return best.name

    # ---- the dispatch view ----------------------------------------------------------------

    async def _routing_view(self) -> tuple[dict[str, WorkerInfo], bool]:
        """(workers, read just now): the view, kept fresh by a background read every
        ``routing_refresh`` seconds; read now when there is none yet or the last read is older
        than ``expiration`` (Redis was unreachable meanwhile)."""
        if self._refresher is None:
            self._refresher = asyncio.ensure_future(self._refresh_view())
        if self._view is None or time.monotonic() - self._view_read_at >= self._expiration:
            return await self._read_view(), True
        return self._view, False

    async def _refresh_view(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._routing_refresh)
            try:
                await self._read_view()
            except Exception as exc:  # Redis down: requests then read (and fail) themselves
                if not failing:
                    log.warning("event=routing_refresh_failed error=%r", exc)
                failing = True
            else:
                failing = False

    async def _read_view(self) -> dict[str, WorkerInfo]:
        """Read the workers from Redis into the view; concurrent callers share one read."""
        if self._view_reading is None:
            self._view_reading = asyncio.ensure_future(self._read_view_once())
        return await asyncio.shield(self._view_reading)

    async def _read_view_once(self) -> dict[str, WorkerInfo]:
        changes, started = self._view_changes, time.monotonic()
        try:
            view = await self.workers()
        finally:
            if changes == self._view_changes:
                self._view_reading = None
        if changes == self._view_changes:
            self._view, self._view_read_at = view, started
        return view

    def _view_changed(self) -> None:
        """A registration or removal here: a read in flight may predate it, so it is not kept
        (its callers still get its answer) and the next read starts afresh."""
        self._view_changes += 1
        self._view_reading = None

    def _in_background(self, work: Awaitable[object], what: str) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)

        def done(task: asyncio.Future[object]) -> None:
            self._background.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.warning("event=registry_background_failed work=%s error=%r", what, exc)

        task.add_done_callback(done)

    async def aclose(self) -> None:
        """Stop refreshing the view; wait for the request counts still being sent."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _choose(
    workers: dict[str, WorkerInfo], model: str, method: DispatchMethod, exclude: Collection[str]
) -> WorkerInfo | None:
    """Shortest queue for its speed, or a lottery weighted by speed, among the workers of
    ``model`` not in ``exclude``."""
    candidates = [w for w in workers.values() if model in w.model_names and w.name not in exclude]
    if not candidates:
        return None
    if method == "lottery":
        weights = [max(w.speed, 0.0) for w in candidates]
        if sum(weights) < 1e-4:
            return None
        return random.choices(candidates, weights=weights, k=1)[0]
    return min(candidates, key=lambda w: w.queue_length / max(w.speed, 1e-4))
