"""The async Redis client waits for a free connection in a burst instead of failing."""

from __future__ import annotations

import asyncio

from shared.redis_client import async_redis


def test_a_burst_past_the_pool_waits_for_connections(redis_url: str, redis_prefix: str) -> None:
    """300 concurrent commands on a pool of 8 connections all succeed (redis-py's default pool
    raised MaxConnectionsError past its 100)."""

    async def burst() -> list[str | None]:
        client = async_redis(redis_url, max_connections=8)
        try:
            await client.set(f"{redis_prefix}k", "v")
            return await asyncio.gather(*(client.get(f"{redis_prefix}k") for _ in range(300)))
        finally:
            await client.aclose()

    assert asyncio.run(burst()) == ["v"] * 300
