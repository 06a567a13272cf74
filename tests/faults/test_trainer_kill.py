"""A trainer SIGKILLed mid-job: with the default lease and orphan-scan settings and Celery's
redelivery an hour away, a restarted trainer takes the job over within 30 s and trains on from the
step after its last checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import Stack, wait_record, wait_until, write_conversations

RESUME_WITHIN_S = 30.0


def _events(api: str, job_id: str) -> list[dict]:
    page = httpx.get(f"{api}/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()
    return list(reversed(page["data"]))


def _checkpoint_steps(api: str, job_id: str) -> list[int]:
    page = httpx.get(f"{api}/v1/fine_tuning/jobs/{job_id}/checkpoints", params={"limit": 100})
    return sorted(c["step_number"] for c in page.json()["data"])


def _metric_steps(events: list[dict]) -> list[int]:
    return [e["data"]["step"] for e in events if e["type"] == "metrics"]


def test_a_killed_trainer_s_job_resumes_from_its_checkpoint_within_30_s_of_a_restart(
    start_stack: Callable[..., Stack], tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Only the runner's lease and orphan scan can bring the job back: Celery would redeliver its
    # unacknowledged message after an hour.
    stack = start_stack({"CELERY_VISIBILITY_TIMEOUT": "3600"})
    api = stack.url
    first = stack.start("trainer")
    data = write_conversations(tmp_path / "train.jsonl")
    body = {
        "model": str(tiny_model_dir),
        "training_file": str(data),
        "method": "lora",
        "hyperparameters": {
            "max_length": 128,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "max_steps": 60,
            "save_steps": 10,
            "logging_steps": 1,
        },
    }
    job = httpx.post(f"{api}/v1/fine_tuning/jobs", json=body).json()
    assert wait_until(lambda: bool(_checkpoint_steps(api, job["id"])), 120, 0.2)
    first.kill()  # SIGKILL: no goodbye, the lease stops being renewed
    saved = max(_checkpoint_steps(api, job["id"]))
    before = len(_events(api, job["id"]))

    restarted_at = time.monotonic()
    stack.start("trainer")

    def resumed() -> bool:
        return any("resumed" in e["message"] for e in _events(api, job["id"])[before:])

    assert wait_until(resumed, 120, 0.1), _events(api, job["id"])[-5:]
    took = time.monotonic() - restarted_at
    assert took <= RESUME_WITHIN_S, f"resumed {took:.1f} s after the restart"
    assert wait_until(lambda: bool(_metric_steps(_events(api, job["id"])[before:])), 120, 0.2)
    stepping = time.monotonic() - restarted_at
    new = _events(api, job["id"])[before:]
    # No step lost beyond the last checkpoint: training goes on from the step after it.
    assert _metric_steps(new)[0] == saved + 1, (saved, _metric_steps(new)[:3])
    print(
        f"resumed {took:.1f} s after the restart (first step {stepping:.1f} s), "
        f"from checkpoint step {saved}"
    )

    final = wait_record(f"{api}/v1/fine_tuning/jobs/{job['id']}", {"succeeded", "failed"}, 300)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
