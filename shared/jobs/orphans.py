"""Send again the jobs whose runner died: their lease ran out while they were ``running``.

Celery redelivers an unacknowledged message only after its visibility timeout (an hour by
default), and only once; a runner killed mid-job must not wait that long. Every runner process
watches the lease index of its own kind of job and, when a lease has expired, sends the job's
message again. Several watchers may see the same orphan: a transaction on the record lets only one
of them send it, and the runner's claim would keep a second copy from running anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.job_records import RecordStore
from shared.jobs.runner import TERMINAL_STATUSES, lease_index_key

log = logging.getLogger(__name__)


def find_orphans(store: RecordStore, grace_seconds: float = 0.0) -> list[str]:
    """Ids of claimed jobs whose lease expired more than ``grace_seconds`` ago."""
    deadline = time.time() - grace_seconds
    ids = store.client.zrangebyscore(lease_index_key(store), "-inf", deadline)
    return [i.decode() if isinstance(i, bytes) else i for i in ids]


def requeue_orphans(
    store: RecordStore,
    send: Callable[[dict[str, Any]], None],
    grace_seconds: float = 0.0,
    notify: Callable[[str, str, str], None] | None = None,
) -> list[str]:
    """Send each orphan again (once, whoever else is watching); returns the ids sent."""
    sent: list[str] = []
    lease_index = lease_index_key(store)
    for job_id in find_orphans(store, grace_seconds):
        now = time.time()

        def take(record: dict[str, Any], now: float = now) -> dict[str, Any] | None:
            expired = (record.get("lease_expires_at") or 0.0) <= now - grace_seconds
            if record.get("status") != "running" or not record.get("lease_owner") or not expired:
                return None
            # The old lease is over: nobody holds the job until the new message is claimed.
            return {"lease_owner": None, "lease_expires_at": None, "requeued_at": int(now)}

        record = store.change(job_id, take, also=lambda pipe, j=job_id: pipe.zrem(lease_index, j))
        if record is None:
            current = store.get(job_id)
            if current is None or current.get("status") in TERMINAL_STATUSES:
                store.client.zrem(lease_index, job_id)  # a stale index entry
            continue
        log.warning("event=job_requeued kind=%s id=%s", store.kind, job_id)
        if notify is not None:
            notify(
                job_id, "Its runner stopped renewing its lease; the job was queued again.", "warn"
            )
        send(record)
        sent.append(job_id)
    return sent


class OrphanWatcher:
    """``requeue_orphans`` now and every ``interval`` seconds, in a daemon thread."""

    def __init__(
        self,
        store: RecordStore,
        send: Callable[[dict[str, Any]], None],
        interval: float = 5.0,
        notify: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._store, self._send, self._interval, self._notify = store, send, interval, notify
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, daemon=True, name=f"orphans-{store.kind}"
        )

    def start(self) -> OrphanWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            try:
                requeue_orphans(self._store, self._send, notify=self._notify)
            except Exception:  # Redis away for a moment: look again later
                log.warning("event=orphan_scan_failed kind=%s", self._store.kind, exc_info=True)
            if self._stop.wait(self._interval):
                return
