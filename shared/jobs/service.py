"""How a Celery job service plugs into the runner: one runner per task, one orphan watcher per
worker process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from shared.job_records import RecordStore
from shared.jobs.orphans import OrphanWatcher
from shared.jobs.runner import JobRunner
from shared.settings import CommonSettings
from shared.stores import Stores

Notify = Callable[[str, str, str], None]


def runner_for(
    store: RecordStore,
    owner: str,
    common: CommonSettings,
    *,
    notify: Notify | None = None,
    on_terminal: Callable[[dict[str, Any]], None] | None = None,
    label: str = "Job",
) -> JobRunner:
    """A runner with the deployment's lease and cancel-poll settings."""
    return JobRunner(
        store,
        owner,
        lease_seconds=common.job_lease_seconds,
        cancel_poll_seconds=common.job_cancel_poll_seconds,
        notify=notify,
        on_terminal=on_terminal,
        label=label,
    )


def watch_orphans_when_ready(
    app: Celery,
    store_of: Callable[[Stores], RecordStore],
    task: str,
    queue: str | Callable[[dict[str, Any]], str],
    notify_of: Callable[[Stores], Notify] | None = None,
) -> None:
    """When this app's Celery worker is ready, start an ``OrphanWatcher`` over ``store_of(stores)``
    that sends ``task`` again (to ``queue``, or ``queue(record)``) for a job whose runner died.

    Nothing connects to Redis until the worker is ready, so importing a tasks module is free.
    """

    def start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        common = CommonSettings()
        stores = Stores.connect(common)

        def send(record: dict[str, Any]) -> None:
            target = queue(record) if callable(queue) else queue
            app.send_task(task, args=[record["id"]], queue=target)

        notify = notify_of(stores) if notify_of is not None else None
        watcher = OrphanWatcher(
            store_of(stores), send, interval=common.job_orphan_scan_seconds, notify=notify
        )
        watcher.start()

    worker_ready.connect(start, weak=False)
