"""Trainers announce the GPUs they offer while they run, so that the controller can refuse a job
that no trainer could ever take (it would wait on its queue for ever).

Each trainer process keeps ``<prefix>trainer:<name>`` (its GPU count) alive with a TTL renewed
every third of it, and its name in ``<prefix>trainers``; a killed trainer's announcement lapses
by itself. Readers see only the live ones.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from shared.jobs.runner import runner_identity
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

CAPACITY_TTL_SECONDS = 15.0


def announce(
    client: redis.Redis, keys: RedisKeys, name: str, gpus: int, ttl: float = CAPACITY_TTL_SECONDS
) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.trainer(name), gpus, px=max(1, int(ttl * 1000)))
        pipe.sadd(keys.trainers, name)
        pipe.execute()


def withdraw(client: redis.Redis, keys: RedisKeys, name: str) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.trainer(name))
        pipe.srem(keys.trainers, name)
        pipe.execute()


def live_trainers(client: redis.Redis, keys: RedisKeys) -> dict[str, int]:
    """GPU count offered by each trainer alive now; lapsed names leave the index."""
    names = sorted(client.smembers(keys.trainers))
    if not names:
        return {}
    values = client.mget([keys.trainer(name) for name in names])
    lapsed = [name for name, value in zip(names, values, strict=True) if value is None]
    if lapsed:
        client.srem(keys.trainers, *lapsed)
    return {n: int(v) for n, v in zip(names, values, strict=True) if v is not None}


def most_gpus_offered(client: redis.Redis, keys: RedisKeys) -> int | None:
    """The most GPUs any live trainer offers; None when no trainer is live."""
    offered = live_trainers(client, keys).values()
    return max(offered) if offered else None


class CapacityHeartbeat:
    """``announce`` now and every third of the TTL, in a daemon thread; ``stop`` withdraws."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, gpus: int, ttl: float = CAPACITY_TTL_SECONDS
    ) -> None:
        self.name = runner_identity("trainer")
        self._client, self._keys, self._gpus, self._ttl = client, keys, gpus, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="trainer-capacity")

    def start(self) -> CapacityHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            withdraw(self._client, self._keys, self.name)
        except redis.RedisError:
            log.warning("event=capacity_withdraw_failed trainer=%s", self.name, exc_info=True)

    def _loop(self) -> None:
        while True:
            try:
                announce(self._client, self._keys, self.name, self._gpus, self._ttl)
            except redis.RedisError:  # Redis away for a moment: the next beat tries again
                log.warning("event=capacity_announce_failed trainer=%s", self.name, exc_info=True)
            if self._stop.wait(self._ttl / 3):
                return


def announce_capacity_when_ready(app: Celery, gpus: int) -> None:
    """While this app's Celery worker runs, announce that it offers ``gpus`` GPUs."""
    beat: list[CapacityHeartbeat] = []

    def start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        common = CommonSettings()
        client = sync_redis(common.redis_url)
        beat.append(CapacityHeartbeat(client, RedisKeys(common.redis_key_prefix), gpus).start())
        log.info("event=capacity_announced trainer=%s gpus=%d", beat[0].name, gpus)

    def stop(sender: Any = None, **_: Any) -> None:
        while beat:
            beat.pop().stop()

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
