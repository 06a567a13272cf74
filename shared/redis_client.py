"""Redis connections with the project's conventions (text responses, short connect timeout)."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis


def async_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)


def sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
