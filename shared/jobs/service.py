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
    watcher: Callable[[], tuple[RecordStore, Callable[[dict[str, Any]], None], Notify | None]],
    common_settings: Callable[[], CommonSettings] = CommonSettings,
) -> None:
    """Start an ``OrphanWatcher`` when this app's worker is ready to take jobs.

    ``watcher()`` returns (the store, how to send a job again, how to tell the job); it is called
    only in the worker process, so importing the tasks module connects to nothing.
    """

    def start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        store, send, notify = watcher()
        interval = common_settings().job_orphan_scan_seconds
        OrphanWatcher(store, send, interval=interval, notify=notify).start()

    worker_ready.connect(start, weak=False)
