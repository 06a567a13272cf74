"""The one job runner, against a real Redis: claims, leases, cancel, redelivery and orphans."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from shared.job_records import RecordStore
from shared.jobs import Finished, HandedOff, JobCancelled, JobFailed, JobRun, JobRunner
from shared.jobs.orphans import OrphanWatcher, find_orphans, requeue_orphans
from shared.redis_keys import RedisKeys
from tests.support import REPO_ROOT, wait_until


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[RecordStore]:
    client = redis.Redis.from_url(redis_url)
    yield RecordStore(client, RedisKeys(redis_prefix), "thing")
    client.close()


def _queued(store: RecordStore, job_id: str = "job-1") -> str:
    store.create({"id": job_id, "status": "queued", "cancel_requested": False})
    return job_id


def test_two_runners_racing_for_one_job_run_it_exactly_once(store: RecordStore) -> None:
    job_id = _queued(store)
    ran: list[str] = []
    start = threading.Barrier(4)

    def work(run: JobRun) -> Finished:
        ran.append(run.owner)
        time.sleep(0.5)
        return Finished({"result": run.owner})

    def deliver(owner: str) -> None:
        start.wait()
        JobRunner(store, owner).run(job_id, work)

    threads = [threading.Thread(target=deliver, args=(f"runner-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record = store.get(job_id)
    assert len(ran) == 1
    assert record["status"] == "succeeded" and record["result"] == ran[0]
    assert record["attempts"] == 1 and record["lease_owner"] is None


def test_a_redelivered_message_for_a_finished_job_does_nothing(store: RecordStore) -> None:
    job_id = _queued(store)
    JobRunner(store, "a").run(job_id, lambda run: Finished({"n": 1}))
    ran = []
    record = JobRunner(store, "b").run(job_id, lambda run: ran.append(1) or Finished())
    assert ran == [] and record["status"] == "succeeded" and record["n"] == 1


def test_a_message_for_a_job_running_elsewhere_leaves_it_alone(store: RecordStore) -> None:
    job_id = _queued(store)
    inside, release = threading.Event(), threading.Event()

    def slow(run: JobRun) -> Finished:
        inside.set()
        release.wait(10)
        return Finished()

    first = threading.Thread(target=JobRunner(store, "a", lease_seconds=3).run, args=(job_id, slow))
    first.start()
    assert inside.wait(10)
    ran = []
    record = JobRunner(store, "b").run(job_id, lambda run: ran.append(1) or Finished())
    assert ran == [] and record["status"] == "running" and record["lease_owner"] == "a"
    release.set()
    first.join()
    assert store.get(job_id)["status"] == "succeeded"


def test_the_lease_is_renewed_while_the_work_runs(store: RecordStore) -> None:
    job_id = _queued(store)
    seen: list[float] = []

    def work(run: JobRun) -> Finished:
        for _ in range(4):
            seen.append(store.get(job_id)["lease_expires_at"])
            time.sleep(0.4)
        return Finished()

    JobRunner(store, "a", lease_seconds=0.9).run(job_id, work)
    assert seen == sorted(seen) and seen[-1] > seen[0]
    assert find_orphans(store, 0) == []


def test_cancel_stops_the_work_at_its_next_check(store: RecordStore) -> None:
    job_id = _queued(store)
    steps: list[int] = []

    def work(run: JobRun) -> Finished:
        for step in range(200):
            run.raise_if_stopped()
            steps.append(step)
            if step == 3:
                store.update(job_id, cancel_requested=True)
            time.sleep(0.02)
        return Finished()

    record = JobRunner(store, "a", cancel_poll_seconds=0.05).run(job_id, work)
    assert record["status"] == "cancelled" and record["finished_at"]
    assert 3 < len(steps) < 200


def test_a_job_cancelled_before_it_started_never_runs(store: RecordStore) -> None:
    job_id = _queued(store)
    store.update(job_id, cancel_requested=True)
    events: list[tuple[str, str]] = []
    ran = []
    runner = JobRunner(store, "a", notify=lambda i, m, level: events.append((m, level)))
    record = runner.run(job_id, lambda run: ran.append(1) or Finished())
    assert ran == [] and record["status"] == "cancelled"
    assert events == [("Job cancelled before it started.", "info")]


def test_failures_become_the_record_error_in_one_shape(store: RecordStore) -> None:
    bad, crash = _queued(store, "bad"), _queued(store, "crash")

    def refuse(run: JobRun) -> Finished:
        raise JobFailed("sources[0]: not found", "ingest_failed", "sources[0]")

    def explode(run: JobRun) -> Finished:
        raise RuntimeError("boom")

    failed = JobRunner(store, "a").run(bad, refuse)
    crashed = JobRunner(store, "a").run(crash, explode)
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "ingest_failed",
        "message": "sources[0]: not found",
        "param": "sources[0]",
    }
    assert crashed["error"] == {
        "code": "internal_error",
        "message": "RuntimeError: boom",
        "param": None,
    }
    assert crashed["lease_owner"] is None and find_orphans(store, 0) == []


def test_a_handed_off_job_is_never_claimed_again(store: RecordStore) -> None:
    job_id = _queued(store)
    record = JobRunner(store, "a").run(job_id, lambda run: HandedOff("merge-1", {"merge_id": "m"}))
    assert record["status"] == "running" and record["handed_off_to"] == "merge-1"
    ran = []
    JobRunner(store, "b").run(job_id, lambda run: ran.append(1) or Finished())
    assert ran == [] and find_orphans(store, 0) == []


def test_a_runner_that_lost_its_lease_stops_and_writes_nothing(store: RecordStore) -> None:
    job_id = _queued(store)
    stopped = []

    def work(run: JobRun) -> Finished:
        # Another runner takes the job over, as after this process stalled past its lease.
        store.update(job_id, lease_owner="someone-else")
        assert wait_until(run.should_stop, 5, 0.05)
        stopped.append(True)
        raise JobCancelled

    record = JobRunner(store, "a", lease_seconds=0.3).run(job_id, work)
    assert stopped == [True]
    assert record["status"] == "running" and record["lease_owner"] == "someone-else"


def test_the_terminal_hook_sees_the_finished_record(store: RecordStore) -> None:
    job_id = _queued(store)
    seen: list[dict[str, Any]] = []
    JobRunner(store, "a", on_terminal=seen.append).run(job_id, lambda run: Finished({"x": 1}))
    assert [r["status"] for r in seen] == ["succeeded"] and seen[0]["x"] == 1


_KILLED_RUNNER = """
import sys, time, redis
from shared.job_records import RecordStore
from shared.jobs import JobRunner, Finished
from shared.redis_keys import RedisKeys

store = RecordStore(redis.Redis.from_url(sys.argv[1]), RedisKeys(sys.argv[2]), "thing")

def work(run):
    for step in range(1000):
        run.update(progress=step)
        print("step", step, flush=True)
        time.sleep(0.05)
    return Finished()

JobRunner(store, "doomed", lease_seconds=1.0).run("job-1", work)
"""


def test_a_killed_runner_s_job_is_sent_again_and_resumed(
    store: RecordStore, redis_url: str, redis_prefix: str
) -> None:
    job_id = _queued(store)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUNNER, redis_url, redis_prefix],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: (store.get(job_id).get("progress") or 0) >= 5, 30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = store.get(job_id)["progress"]
    assert store.get(job_id)["status"] == "running"
    assert find_orphans(store, 0) == []  # its lease is still live for a moment

    sent: list[dict[str, Any]] = []
    watcher = OrphanWatcher(store, sent.append, interval=0.1).start()
    try:
        assert wait_until(lambda: bool(sent), 10)
    finally:
        watcher.stop()
    assert [r["id"] for r in sent] == [job_id]
    assert requeue_orphans(store, sent.append) == []  # sent once, whoever watches

    resumed_from: list[tuple[bool, int]] = []

    def resume(run: JobRun) -> Finished:
        resumed_from.append((run.resumed, run.record["progress"]))
        return Finished({"progress": 1000})

    record = JobRunner(store, "rescuer").run(job_id, resume)
    assert resumed_from == [(True, killed_at)]
    assert record["status"] == "succeeded" and record["attempts"] == 2
    assert json.loads(json.dumps(record))["lease_owner"] is None
