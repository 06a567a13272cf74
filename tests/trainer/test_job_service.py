"""Fine-tuning jobs end to end: controller REST API -> Redis -> a real trainer Celery worker."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import httpx
import pytest

from tests.support import TERMINAL, Stack, wait_record, wait_until, write_conversations


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return write_conversations(tmp_path / "train.jsonl")


@pytest.fixture
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """A controller whose jobs a killed trainer leaves within seconds (short visibility timeout,
    leases and orphan scans); the test starts the trainers behind it."""
    return start_stack(
        {
            "CELERY_VISIBILITY_TIMEOUT": "4",
            "JOB_LEASE_SECONDS": "3",
            "JOB_ORPHAN_SCAN_SECONDS": "1",
        }
    )


def job_body(model: Path, data: Path, **hyper: object) -> dict:
    return {
        "model": str(model),
        "training_file": str(data),
        "method": "lora",
        "hyperparameters": {
            "max_length": 128,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "n_epochs": 1,
            **hyper,
        },
        "suffix": "paris",
    }


def wait_job(
    api: str, job_id: str, timeout: float = 180, until: Collection[str] = TERMINAL
) -> dict:
    return wait_record(f"{api}/v1/fine_tuning/jobs/{job_id}", until, timeout)


def events_of(api: str, job_id: str) -> list[dict]:
    page = httpx.get(f"{api}/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()
    return list(reversed(page["data"]))


def test_a_lora_job_runs_to_success(stack: Stack, tiny_model_dir: Path, data_file: Path) -> None:
    api = stack.url
    stack.start("trainer")
    created = httpx.post(
        f"{api}/v1/fine_tuning/jobs",
        json=job_body(tiny_model_dir, data_file, max_steps=12, save_steps=5),
    )
    assert created.status_code == 201, created.text
    job = wait_job(api, created.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["fine_tuned_model"] == "tiny-llama-paris"
    assert job["trained_tokens"] > 0
    assert Path(job["result_dir"]).is_dir()
    events = events_of(api, job["id"])
    metrics = [e for e in events if e["type"] == "metrics"]
    assert metrics and {"step", "loss", "learning_rate"} <= set(metrics[-1]["data"])
    assert events[-1]["message"] == "The job has successfully completed."
    checkpoints = httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
    assert [c["step_number"] for c in checkpoints][:2] == [10, 5]


def test_cancel_stops_a_running_job_within_seconds(
    stack: Stack, tiny_model_dir: Path, data_file: Path
) -> None:
    api = stack.url
    stack.start("trainer")
    job = httpx.post(
        f"{api}/v1/fine_tuning/jobs",
        json=job_body(tiny_model_dir, data_file, max_steps=100000, save_steps=100000),
    ).json()
    wait_job(api, job["id"], until={"running"})
    assert wait_until(
        lambda: any(e["type"] == "metrics" for e in events_of(api, job["id"])), 60, 0.5
    )
    httpx.post(f"{api}/v1/fine_tuning/jobs/{job['id']}/cancel").raise_for_status()
    assert wait_job(api, job["id"], timeout=15)["status"] == "cancelled"


def test_a_killed_worker_leaves_the_job_to_the_next_which_resumes(
    stack: Stack, tiny_model_dir: Path, data_file: Path
) -> None:
    api = stack.url
    first = stack.start("trainer")
    job = httpx.post(
        f"{api}/v1/fine_tuning/jobs",
        json=job_body(tiny_model_dir, data_file, max_steps=60, save_steps=10),
    ).json()

    def has_checkpoint() -> bool:
        data = httpx.get(f"{api}/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
        return bool(data)

    assert wait_until(has_checkpoint, 120, 0.2)
    first.kill()  # SIGKILL: no goodbye, the task is never acknowledged
    stack.start("trainer")
    final = wait_job(api, job["id"], timeout=180)
    assert final["status"] == "succeeded", final
    messages = [e["message"] for e in events_of(api, job["id"])]
    assert any("resumed" in m for m in messages), messages
    steps = [c["step_number"] for c in final["checkpoints"]]
    assert max(steps) >= 50 and steps == sorted(steps)
