"""WorkerRegistry against a real Redis: registration, liveness by key expiry, dispatch."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.controller.registry import MAX_SPEED, MIN_SPEED, WorkerRegistry
from shared.redis_client import async_redis
from shared.redis_keys import RedisKeys
from shared.schemas import WorkerStatus

W1, W2 = "http://127.0.0.1:1", "http://127.0.0.1:2"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = async_redis(redis_url)
    yield client
    await client.aclose()


def make(
    redis: Redis, prefix: str, expiration: float = 5.0, routing_refresh: float = 0.0
) -> WorkerRegistry:
    return WorkerRegistry(redis, RedisKeys(prefix), expiration, routing_refresh)


@pytest.fixture(params=[0.0, 0.05], ids=["read-each-pick", "routing-view"])
async def routing_refresh(request: pytest.FixtureRequest) -> float:
    """Dispatch behaves the same whether it reads Redis on every pick or keeps a view."""
    return request.param


def status(*models: str, queue: int = 0, speed: float = 1.0) -> WorkerStatus:
    return WorkerStatus(model_names=list(models), queue_length=queue, speed=speed)


async def test_register_list_and_reregister(redis: Redis, redis_prefix: str) -> None:
    reg = make(redis, redis_prefix)
    assert await reg.register(W1, status("a", "b")) is True
    assert await reg.register(W2, status("b")) is True
    assert await reg.register(W1, status("a", "b", queue=3)) is False
    assert await reg.models() == ["a", "b"]
    workers = await reg.workers()
    assert set(workers) == {W1, W2}
    assert workers[W1].queue_length == 3
    assert [w.name for w in await reg.workers_for_model("a")] == [W1]


async def test_two_registries_on_one_redis_share_workers(
    redis: Redis, redis_url: str, redis_prefix: str
) -> None:
    other_client = async_redis(redis_url)
    try:
        await make(redis, redis_prefix).register(W1, status("m"))
        assert await make(other_client, redis_prefix).models() == ["m"]
    finally:
        await other_client.aclose()


async def test_silent_worker_expires_and_heartbeat_does_not_resurrect_it(
    redis: Redis, redis_prefix: str
) -> None:
    reg = make(redis, redis_prefix, expiration=0.3)
    await reg.register(W1, status("m"))
    assert await reg.heartbeat(W1, 2) is True
    await asyncio.sleep(0.2)
    assert await reg.heartbeat(W1, 1) is True  # extends the lease
    await asyncio.sleep(0.2)
    assert await reg.models() == ["m"]
    await asyncio.sleep(0.3)
    assert await reg.models() == []
    assert await reg.heartbeat(W1, 0) is False
    assert not await redis.exists(RedisKeys(redis_prefix).worker(W1))
    assert await redis.smembers(RedisKeys(redis_prefix).workers) == set()


async def test_a_worker_that_opted_out_of_heartbeat_checks_expires_all_the_same(
    redis: Redis, redis_prefix: str
) -> None:
    """FastChat let ``check_heart_beat: false`` keep a worker routable for ever, dead or fake."""
    reg = make(redis, redis_prefix, expiration=0.2)
    await reg.register(W1, status("m"), check_heart_beat=False)
    assert (await reg.workers())[W1].check_heart_beat is False  # still listed as it asked
    assert await reg.heartbeat(W1, 0) is True
    await asyncio.sleep(0.4)
    assert await reg.models() == []


async def test_a_claimed_speed_is_bounded(redis: Redis, redis_prefix: str) -> None:
    reg = make(redis, redis_prefix)
    await reg.register(W1, status("m", speed=1000.0))
    await reg.register(W2, status("m", speed=-5.0))
    workers = await reg.workers()
    assert (workers[W1].speed, workers[W2].speed) == (MAX_SPEED, MIN_SPEED)


async def test_pick_skips_the_workers_a_request_tried_already(
    redis: Redis, redis_prefix: str, routing_refresh: float
) -> None:
    reg = make(redis, redis_prefix, routing_refresh=routing_refresh)
    await reg.register(W1, status("m"))
    await reg.register(W2, status("m", queue=5))
    assert await reg.pick_worker("m", "shortest_queue", exclude=[W1]) == W2
    assert await reg.pick_worker("m", "lottery", exclude=[W1]) == W2
    assert await reg.pick_worker("m", "shortest_queue", exclude=[W1, W2]) is None


async def test_heartbeat_updates_queue_length(redis: Redis, redis_prefix: str) -> None:
    reg = make(redis, redis_prefix)
    await reg.register(W1, status("m"))
    await reg.heartbeat(W1, 7)
    assert (await reg.workers())[W1].queue_length == 7


async def test_unknown_worker_heartbeat_asks_for_registration(
    redis: Redis, redis_prefix: str
) -> None:
    assert await make(redis, redis_prefix).heartbeat(W1, 0) is False


async def test_shortest_queue_picks_least_loaded_and_counts_the_pick(
    redis: Redis, redis_prefix: str, routing_refresh: float
) -> None:
    reg = make(redis, redis_prefix, routing_refresh=routing_refresh)
    await reg.register(W1, status("m", queue=2))
    await reg.register(W2, status("m", queue=0))
    picks = [await reg.pick_worker("m", "shortest_queue") for _ in range(4)]
    # W2 takes the first two, then they alternate as the optimistic counts even out.
    assert picks[:2] == [W2, W2]
    assert Counter(picks) == Counter({W2: 3, W1: 1})
    assert await reg.pick_worker("other", "shortest_queue") is None


async def test_shortest_queue_weighs_by_speed(
    redis: Redis, redis_prefix: str, routing_refresh: float
) -> None:
    reg = make(redis, redis_prefix, routing_refresh=routing_refresh)
    await reg.register(W1, status("m", queue=4, speed=4.0))
    await reg.register(W2, status("m", queue=2, speed=1.0))
    assert await reg.pick_worker("m", "shortest_queue") == W1


async def test_lottery_follows_speed(
    redis: Redis, redis_prefix: str, routing_refresh: float
) -> None:
    reg = make(redis, redis_prefix, routing_refresh=routing_refresh)
    await reg.register(W1, status("m", speed=10.0))
    await reg.register(W2, status("m", speed=0.0))  # counted as the least speed, 0.1
    picks = Counter([await reg.pick_worker("m", "lottery") for _ in range(200)])
    assert picks[W1] > 150
    await reg.remove(W1)
    await reg.remove(W2)
    assert await reg.pick_worker("m", "lottery") is None


async def test_pick_does_not_resurrect_an_expired_worker(
    redis: Redis, redis_prefix: str, routing_refresh: float
) -> None:
    reg = make(redis, redis_prefix, 0.2, routing_refresh)
    await reg.register(W1, status("m"))
    await asyncio.sleep(0.3)
    assert await reg.pick_worker("m", "shortest_queue") is None
    assert not await redis.exists(RedisKeys(redis_prefix).worker(W1))


async def test_routing_view_picks_a_worker_registered_through_another_controller(
    redis: Redis, redis_prefix: str
) -> None:
    here = make(redis, redis_prefix, routing_refresh=60.0)
    other = make(redis, redis_prefix)
    try:
        await here.register(W1, status("m"))
        assert await here.pick_worker("m", "shortest_queue") == W1
        await other.register(W2, status("n"))
        # The view names no worker of "n": it is read again rather than answering "none".
        assert await here.pick_worker("n", "shortest_queue") == W2
    finally:
        await here.aclose()


async def test_routing_view_drops_a_worker_removed_here_at_once(
    redis: Redis, redis_prefix: str
) -> None:
    reg = make(redis, redis_prefix, routing_refresh=60.0)
    try:
        await reg.register(W1, status("m"))
        await reg.register(W2, status("m", queue=9))
        assert await reg.pick_worker("m", "shortest_queue") == W1
        await reg.remove(W1)  # as failover does with a worker that refused the connection
        assert {await reg.pick_worker("m", "shortest_queue") for _ in range(5)} == {W2}
    finally:
        await reg.aclose()


async def test_routing_view_follows_other_controllers_within_its_refresh(
    redis: Redis, redis_prefix: str
) -> None:
    reg = make(redis, redis_prefix, routing_refresh=0.05)
    other = make(redis, redis_prefix)
    try:
        await reg.register(W1, status("m"))
        await reg.register(W2, status("m", queue=1))
        assert await reg.pick_worker("m", "shortest_queue") == W1
        await other.heartbeat(W1, 50)  # W1 got busy through other controllers
        await asyncio.sleep(0.3)
        assert {await reg.pick_worker("m", "shortest_queue") for _ in range(5)} == {W2}
    finally:
        await reg.aclose()


async def test_routing_view_counts_each_pick_here_at_once_and_in_redis(
    redis: Redis, redis_prefix: str
) -> None:
    """A burst spreads over the workers by this controller's own counts, and the counts reach
    Redis for the other controllers."""
    reg = make(redis, redis_prefix, routing_refresh=60.0)
    await reg.register(W1, status("m"))
    await reg.register(W2, status("m"))
    picks = await asyncio.gather(*(reg.pick_worker("m", "shortest_queue") for _ in range(10)))
    await reg.aclose()
    assert Counter(picks) == Counter({W1: 5, W2: 5})
    workers = await make(redis, redis_prefix).workers()
    assert (workers[W1].queue_length, workers[W2].queue_length) == (5, 5)
