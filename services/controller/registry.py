"""Worker registry kept in Redis, so that several controllers share it and restarts lose nothing.

Each worker is a Redis hash that expires ``expiration`` seconds after its last heartbeat, so a
worker that stops heartbeating leaves routing by itself; no sweeper thread is needed. Every worker
expires so, whatever its registration's ``check_heart_beat`` said (FastChat let a worker opt out,
which kept a dead or fake worker routable for ever).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Collection
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
    """Registration, heartbeats, listing and dispatch over a shared Redis."""

    def __init__(self, redis: Redis, keys: RedisKeys, expiration: float) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = max(1, int(expiration * 1000))
        self._update_script = redis.register_script(_UPDATE_IF_EXISTS)
        self._increment_script = redis.register_script(_INCREMENT_QUEUE_IF_EXISTS)

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
        candidates = [w for w in await self.workers_for_model(model) if w.name not in exclude]
        if not candidates:
            return None
        if method == "lottery":
            weights = [max(w.speed, 0.0) for w in candidates]
            if sum(weights) < 1e-4:
                return None
            return random.choices(candidates, weights=weights, k=1)[0].name
        best = min(candidates, key=lambda w: w.queue_length / max(w.speed, 1e-4))
        # Count the request against the worker until its next heartbeat reports the truth,
        # so a burst of requests spreads over workers instead of piling on one.
        await self._increment_script(keys=[self._keys.worker(best.name)], args=[])
        return best.name
