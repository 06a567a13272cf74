"""Job-like records (datasets, and later training jobs and merges) kept in Redis.

One JSON document per record under ``{prefix}{kind}:{id}`` plus a sorted-set index by creation
time, so that every controller and worker service sees the same state and a restart loses nothing.
Writers are the controller (create, cancel requests) and the one task that owns the record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline

from shared.redis_keys import RedisKeys


class RecordStore:
    """Synchronous on purpose: Celery tasks use it directly and FastAPI runs sync routes in
    its thread pool, so neither blocks an event loop."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, kind: str) -> None:
        self._redis = client
        self._keys = keys
        self._kind = kind

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    @property
    def kind(self) -> str:
        return self._kind

    def _key(self, record_id: str) -> str:
        return self._keys.record(self._kind, record_id)

    def create(self, record: dict[str, Any]) -> None:
        key = self._key(record["id"])
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, json.dumps(record), nx=True)
            pipe.zadd(self._keys.record_index(self._kind), {record["id"]: time.time()})
            created, _ = pipe.execute()
        if not created:
            raise KeyError(f"{self._kind} {record['id']} already exists")

    def get(self, record_id: str) -> dict[str, Any] | None:
        raw = self._redis.get(self._key(record_id))
        return json.loads(raw) if raw else None

    def update(self, record_id: str, **fields: Any) -> dict[str, Any] | None:
        """Merge top-level fields atomically; returns the new record (None if there is none).

        Optimistic: retried if another writer changed the record in between (WATCH).
        """
        return self.update_if(record_id, lambda _: True, **fields)

    def update_if(
        self,
        record_id: str,
        condition: Callable[[dict[str, Any]], bool],
        *,
        also: Callable[[Pipeline], Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any] | None:
        """``update`` only when ``condition(current record)`` holds, in the same transaction;
        None when there is no record or the condition is false (e.g. two claimers race)."""
        return self.change(record_id, lambda record: fields if condition(record) else None, also)

    def change(
        self,
        record_id: str,
        fields_for: Callable[[dict[str, Any]], dict[str, Any] | None],
        also: Callable[[Pipeline], Any] | None = None,
    ) -> dict[str, Any] | None:
        """Merge ``fields_for(current record)`` into the record in one transaction (WATCH,
        retried if another writer changed it in between); None leaves the record alone.

        ``also`` adds commands to the same MULTI (an index kept in step with the record).
        """
        key = self._key(record_id)
        with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = json.loads(raw) if raw is not None else None
                    fields = fields_for(current) if current is not None else None
                    if current is None or fields is None:
                        pipe.unwatch()
                        return None
                    record = {**current, **fields}
                    pipe.multi()
                    pipe.set(key, json.dumps(record))
                    if also is not None:
                        also(pipe)
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def delete(self, record_id: str) -> bool:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(record_id))
            pipe.zrem(self._keys.record_index(self._kind), record_id)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def list(self, limit: int = 100, after: str | None = None) -> tuple[list[dict], bool]:
        """Newest first; ``after`` is the id of the last record of the previous page."""
        index = self._keys.record_index(self._kind)
        start = 0
        if after is not None:
            rank = self._redis.zrevrank(index, after)
            if rank is None:
                raise KeyError(after)
            start = rank + 1
        ids = self._redis.zrevrange(index, start, start + limit)
        has_more = len(ids) > limit
        ids = ids[:limit]
        raws = self._redis.mget([self._key(i) for i in ids]) if ids else []
        return [json.loads(r) for r in raws if r], has_more


class EventLog:
    """Append-only events of a record (``{prefix}{kind}:{id}:events``), OpenAI-style paging."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, kind: str) -> None:
        self._redis = client
        self._keys = keys
        self._kind = kind

    def _key(self, record_id: str) -> str:
        return f"{self._keys.record(self._kind, record_id)}:events"

    def append(self, record_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Store an event; it gets a sequential id (``<record>-ev-<n>``) and a timestamp."""
        key = self._key(record_id)
        n = self._redis.incr(f"{key}:seq")
        stored = {"id": f"{record_id}-ev-{n}", "created_at": int(time.time()), **event}
        self._redis.rpush(key, json.dumps(stored))
        return stored

    def page(
        self, record_id: str, limit: int = 20, after: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, as OpenAI lists events; ``after``: the last id of the previous page."""
        events = [json.loads(raw) for raw in self._redis.lrange(self._key(record_id), 0, -1)]
        events.reverse()
        if after is not None:
            ids = [e["id"] for e in events]
            if after not in ids:
                raise KeyError(after)
            events = events[ids.index(after) + 1 :]
        return events[:limit], len(events) > limit
