"""Redis connections with the project's conventions (text responses, short connect timeout)."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from shared.settings import REDIS_MAX_CONNECTIONS, REDIS_POOL_WAIT_S


def async_redis(
    url: str, max_connections: int = REDIS_MAX_CONNECTIONS, pool_wait: float = REDIS_POOL_WAIT_S
) -> aioredis.Redis:
    """A client on a blocking pool: past ``max_connections`` concurrent commands, a command
    waits (up to ``pool_wait`` seconds) for a free connection. redis-py's default async pool
    instead raises MaxConnectionsError past 100, which failed the 101st of a burst of requests
    arriving together at the controller."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait,
        decode_responses=True,
        socket_connect_timeout=5,
    )
    return aioredis.Redis.from_pool(pool)


def sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
