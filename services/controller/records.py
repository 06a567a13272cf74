"""Job-like records the controller queues (dataset builds, fine-tuning jobs, merges,
evaluations): paging and cancelling, the same for every kind. No HTTP here.

A record is created by the controller in status ``queued`` (or ``validating_files``), claimed by
the one runner that takes its Celery message (it sets ``lease_owner`` and ``running``), and ends
``succeeded``, ``failed`` or ``cancelled``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery

from services.controller.field_errors import InvalidFields
from shared.job_records import RecordStore
from shared.settings import CommonSettings
from shared.stores import Stores

FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
# No runner has started these yet: a cancel needs nobody's cooperation.
NOT_STARTED_STATUSES = ("queued", "validating_files")
MAX_PAGE_SIZE = 100

Page = dict[str, Any]


@dataclass(frozen=True)
class Backend:
    """What the record and deployment APIs work with: the Redis stores (built once per app),
    the settings (where datasets, jobs and models live), and the Celery app that queues tasks."""

    stores: Stores
    common: CommonSettings
    celery: Celery


def check_page_size(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidFields([("limit", f"must be between 1 and {MAX_PAGE_SIZE}")])


def page(
    fetch: Callable[[int, str | None], tuple[list[dict[str, Any]], bool]],
    limit: int,
    after: str | None,
    noun: str,
) -> Page:
    """One page of OpenAI's list shape; ``after`` is the last id of the previous page."""
    check_page_size(limit)
    try:
        items, has_more = fetch(limit, after)
    except KeyError:
        raise InvalidFields([("after", f"unknown {noun} {after!r}")]) from None
    return {"object": "list", "data": items, "has_more": has_more}


@dataclass(frozen=True)
class CancelOutcome:
    record: dict[str, Any]
    # True when the record had not started and is ``cancelled`` now; False when a runner still
    # has to notice ``cancel_requested``, or the record had already finished.
    stopped_now: bool


def cancel_record(store: RecordStore, record_id: str) -> CancelOutcome | None:
    """Cancel a record, in one transaction on it; None when there is no such record.

    Not started and not claimed by a runner: ``cancelled`` at once (its message, if a runner ever
    takes it, finds a finished record). Running: ``cancel_requested`` is set and the runner stops
    at its next check. Finished: left as it is.
    """
    stopped = False

    def fields_for(record: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal stopped
        stopped = False  # the transaction may be retried on a newer record
        if record.get("status") in FINISHED_STATUSES:
            return None
        if record.get("status") in NOT_STARTED_STATUSES and not record.get("lease_owner"):
            stopped = True
            return {"status": "cancelled", "cancel_requested": True, "finished_at": _now()}
        return {"cancel_requested": True}

    updated = store.change(record_id, fields_for)
    if updated is not None:
        return CancelOutcome(updated, stopped)
    current = store.get(record_id)
    return None if current is None else CancelOutcome(current, False)


def _now() -> int:
    return int(time.time())
