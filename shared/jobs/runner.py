"""Run one job record to a terminal state, at most one runner at a time.

A job is a record in a ``RecordStore`` (dataset build, fine-tuning job, merge, evaluation) and a
Celery message that names it. Celery may deliver the message more than once (late acks, a worker
lost, an orphan sent again), so the record, not the message, decides who runs:

- **Claim** is one Redis transaction on the record: it succeeds only when the job is not finished,
  not handed off, and nobody else holds a live lease. Two deliveries racing: exactly one wins; the
  other returns the record untouched (and its message is acknowledged).
- **Lease**: the winner renews ``lease_expires_at`` every third of ``lease_seconds`` from a
  background thread, and only while it still holds it. If the lease was taken over (this process
  stalled past its expiry), ``should_stop`` turns true and nothing more is written by this runner.
- **Cancel**: ``should_stop`` reads the record's ``cancel_requested`` flag at most every
  ``cancel_poll_seconds``; the work stops at its next safe point and raises ``JobCancelled``.
- **Finish** writes the terminal status, ``finished_at`` and the outcome's fields in the same
  transaction that checks the lease is still ours, then releases it.
- **Orphans**: a claimed job is listed in a sorted set by lease expiry; ``OrphanWatcher`` sends the
  message again for a job whose lease ran out (its runner died), and the new runner resumes where
  its service can (the trainer from its last checkpoint).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.job_records import RecordStore

log = logging.getLogger(__name__)

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


@dataclass
class Finished:
    """The job ended; ``fields`` go onto the record with the status."""

    fields: dict[str, Any] = field(default_factory=dict)
    status: str = "succeeded"


@dataclass
class HandedOff:
    """The work goes on elsewhere (a trained adapter waiting for its merge): the record stays
    ``running`` without a lease, and no redelivered message may claim it again."""

    to: str
    fields: dict[str, Any] = field(default_factory=dict)
    # Runs once the record says where the job went (send the next stage's message only then, so
    # that stage never sees a record that does not name it yet).
    then: Callable[[], None] | None = None


Outcome = Finished | HandedOff


class JobFailed(Exception):
    """The work cannot succeed; ``code``, ``message`` and ``param`` become the record's error."""

    def __init__(self, message: str, code: str = "job_failed", param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class JobCancelled(Exception):
    """The work saw ``should_stop`` and stopped at a safe point."""


def runner_identity(service: str) -> str:
    """Unique per process and run: a restarted process never mistakes an old lease for its own."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_index_key(store: RecordStore) -> str:
    """Sorted set of the kind's claimed job ids, scored by lease expiry (orphans: score < now)."""
    return f"{store.keys.record_index(store.kind)}:leases"


class JobRun:
    """What the work function gets: the claimed record, cancel polling, and progress writes."""

    def __init__(self, runner: JobRunner, record: dict[str, Any], resumed: bool) -> None:
        self._runner = runner
        self.id: str = record["id"]
        self.record = record
        self.resumed = resumed
        self.owner = runner.owner
        self.lease_lost = threading.Event()
        self._polled_at = 0.0
        self._cancelled = False

    def cancel_requested(self) -> bool:
        """The record's cancel flag, read at most every ``cancel_poll_seconds``."""
        now = time.monotonic()
        if not self._cancelled and now - self._polled_at >= self._runner.cancel_poll_seconds:
            self._polled_at = now
            current = self._runner.store.get(self.id) or {}
            self._cancelled = bool(current.get("cancel_requested"))
        return self._cancelled

    def should_stop(self) -> bool:
        return self.lease_lost.is_set() or self.cancel_requested()

    def raise_if_stopped(self) -> None:
        if self.should_stop():
            raise JobCancelled

    def update(self, **fields: Any) -> dict[str, Any] | None:
        """Write progress while this runner holds the job (None once it does not)."""
        return self._runner.store.update_if(self.id, self._runner._held, **fields)


class JobRunner:
    """Claims, runs and finishes jobs of one store on behalf of ``owner``."""

    def __init__(
        self,
        store: RecordStore,
        owner: str,
        *,
        lease_seconds: float = 10.0,
        cancel_poll_seconds: float = 1.0,
        notify: Callable[[str, str, str], None] | None = None,
        on_terminal: Callable[[dict[str, Any]], None] | None = None,
        label: str = "Job",
    ) -> None:
        self.store = store
        self.label = label
        self.owner = owner
        self._index = lease_index_key(store)
        self.lease_seconds = lease_seconds
        self.cancel_poll_seconds = cancel_poll_seconds
        # notify(job id, message, level): the job's event log, where the service keeps one.
        self._notify = notify
        # Called with the finished record (a merge finishing the fine-tuning job it belongs to).
        self._on_terminal = on_terminal

    # -- conditions evaluated inside the record's transaction ----------------------------------

    def _claimable(self, record: dict[str, Any]) -> bool:
        if record.get("status") in TERMINAL_STATUSES or record.get("handed_off_to"):
            return False
        holder = record.get("lease_owner")
        expires = record.get("lease_expires_at") or 0.0
        return not holder or holder == self.owner or expires <= time.time()

    def _held(self, record: dict[str, Any]) -> bool:
        return record.get("lease_owner") == self.owner

    # -- the run -----------------------------------------------------------------------------

    def run(self, job_id: str, work: Callable[[JobRun], Outcome]) -> dict[str, Any] | None:
        """Run ``work`` for the job unless it is finished or held by a live runner elsewhere.

        Returns the record as this runner left it (or found it); None if there is no record.
        """
        before = self.store.get(job_id)
        if before is None:
            log.error("event=job_missing kind=%s id=%s", self.store.kind, job_id)
            return None
        claimed = self._claim(job_id)
        if claimed is None:
            current = self.store.get(job_id)
            log.info(
                "event=job_not_claimed kind=%s id=%s status=%s holder=%s",
                self.store.kind,
                job_id,
                (current or {}).get("status"),
                (current or {}).get("lease_owner"),
            )
            return current
        run = JobRun(self, claimed, resumed=before.get("status") == "running")
        renewer = threading.Thread(
            target=self._renew, args=(run,), daemon=True, name=f"lease-{job_id}"
        )
        renewer.start()
        try:
            return self._execute(run, work)
        finally:
            run.lease_lost.set()  # stops the renewer
            renewer.join(timeout=5)

    def _claim(self, job_id: str) -> dict[str, Any] | None:
        now = time.time()
        expires = now + self.lease_seconds

        def claim(record: dict[str, Any]) -> dict[str, Any] | None:
            if not self._claimable(record):
                return None
            return {
                "status": "running",
                "started_at": record.get("started_at") or int(now),
                "lease_owner": self.owner,
                "lease_expires_at": expires,
                "attempts": int(record.get("attempts") or 0) + 1,
            }

        return self.store.change(
            job_id, claim, also=lambda pipe: pipe.zadd(self._index, {job_id: expires})
        )

    def _renew(self, run: JobRun) -> None:
        while not run.lease_lost.wait(self.lease_seconds / 3):
            expires = time.time() + self.lease_seconds
            try:
                renewed = self.store.update_if(
                    run.id,
                    self._held,
                    also=lambda pipe, e=expires: pipe.zadd(self._index, {run.id: e}),
                    lease_expires_at=expires,
                )
            except Exception:  # Redis away for a moment: try again at the next renewal
                log.warning("event=lease_renewal_failed id=%s", run.id, exc_info=True)
                continue
            if renewed is None:
                log.error(
                    "event=lease_lost kind=%s id=%s owner=%s", self.store.kind, run.id, self.owner
                )
                run.lease_lost.set()

    def _execute(self, run: JobRun, work: Callable[[JobRun], Outcome]) -> dict[str, Any] | None:
        kind = self.store.kind
        if run.cancel_requested():
            self.notify(run.id, f"{self.label} cancelled before it started.")
            return self._finish(run, "cancelled", {})
        self.notify(
            run.id,
            f"{self.label} resumed by a new runner after the previous one stopped."
            if run.resumed
            else f"{self.label} started on {self.owner}.",
        )
        log.info(
            "event=job_started kind=%s id=%s owner=%s resumed=%s",
            kind,
            run.id,
            self.owner,
            run.resumed,
        )
        try:
            outcome = work(run)
        except JobCancelled:
            if run.lease_lost.is_set() and not run.cancel_requested():
                return self.store.get(run.id)  # someone else runs it now
            self.notify(run.id, f"{self.label} cancelled.")
            return self._finish(run, "cancelled", {})
        except JobFailed as exc:
            log.warning(
                "event=job_failed kind=%s id=%s code=%s message=%r",
                kind,
                run.id,
                exc.code,
                exc.message,
            )
            self.notify(run.id, exc.message, "error")
            error = {"code": exc.code, "message": exc.message, "param": exc.param}
            return self._finish(run, "failed", {"error": error})
        except Exception as exc:
            log.exception("event=job_crashed kind=%s id=%s", kind, run.id)
            message = f"{type(exc).__name__}: {exc}"
            self.notify(run.id, message, "error")
            error = {"code": "internal_error", "message": message, "param": None}
            return self._finish(run, "failed", {"error": error})
        if isinstance(outcome, HandedOff):
            return self._hand_off(run, outcome)
        return self._finish(run, outcome.status, outcome.fields)

    def _release_fields(self) -> dict[str, Any]:
        return {"lease_owner": None, "lease_expires_at": None}

    def _finish(self, run: JobRun, status: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        record = self.store.update_if(
            run.id,
            self._held,
            also=lambda pipe: pipe.zrem(self._index, run.id),
            status=status,
            finished_at=int(time.time()),
            **self._release_fields(),
            **fields,
        )
        if record is None:
            log.error(
                "event=job_finish_refused kind=%s id=%s reason=lease_lost", self.store.kind, run.id
            )
            return self.store.get(run.id)
        log.info("event=job_finished kind=%s id=%s status=%s", self.store.kind, run.id, status)
        if self._on_terminal is not None:
            self._on_terminal(record)
        return record

    def _hand_off(self, run: JobRun, outcome: HandedOff) -> dict[str, Any] | None:
        record = self.store.update_if(
            run.id,
            self._held,
            also=lambda pipe: pipe.zrem(self._index, run.id),
            handed_off_to=outcome.to,
            **self._release_fields(),
            **outcome.fields,
        )
        if record is None:
            log.error("event=job_hand_off_refused kind=%s id=%s", self.store.kind, run.id)
            return self.store.get(run.id)
        log.info("event=job_handed_off kind=%s id=%s to=%s", self.store.kind, run.id, outcome.to)
        if outcome.then is not None:
            outcome.then()
        return record

    def notify(self, job_id: str, message: str, level: str = "info") -> None:
        if self._notify is not None:
            self._notify(job_id, message, level)
