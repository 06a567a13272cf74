"""Resume: a job interrupted after a checkpoint continues from it (weights or adapter, optimizer,
scheduler, RNG, data position) and ends where an uninterrupted run ends; cancelling stops within a
step and saves nothing more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.trainer.checkpoints import list_checkpoints
from services.trainer.job import run_training
from tests.trainer.builders import EventLog, repetitive_dataset, tiny_request, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "chats.json", repetitive_dataset())


def stop_after(events: EventLog, step: int):
    """A ``should_stop`` that turns true once a step has been reported."""
    return lambda: any(e["data"]["step"] >= step for e in events.of_type("metrics"))


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_interrupted_run_resumes_from_its_checkpoint(
    learnable_model_dir: Path, dataset: Path, tmp_path: Path, method: str
) -> None:
    hyperparameters = {"max_steps": 8, "save_steps": 3, "lr_scheduler": "cosine"}
    request = tiny_request(
        learnable_model_dir, dataset, method=method, hyperparameters=hyperparameters
    )
    straight = EventLog()
    reference = run_training(request, tmp_path / "straight", on_event=straight)

    job = tmp_path / "job"
    first = EventLog()
    cancelled = run_training(request, job, on_event=first, should_stop=stop_after(first, 4))
    assert cancelled["status"] == "cancelled" and cancelled["steps"] == 4
    assert not (job / "final").exists()
    assert [step for step, _ in list_checkpoints(job / "checkpoints")] == [3]
    # A worker killed while saving leaves a half-written checkpoint: it must not be used.
    partial = job / "checkpoints" / "checkpoint-5"
    partial.mkdir()
    (partial / "optimizer.pt").write_bytes(b"truncated")

    second = EventLog()
    resumed = run_training(request, job, on_event=second)

    assert any("resuming from checkpoint-3 (step 3)" in m for m in second.messages("info"))
    assert any("checkpoint-5" in m for m in second.messages("warn"))
    assert resumed["status"] == "succeeded"
    assert resumed["steps"] == reference["steps"] == 8
    losses = second.losses()
    assert sorted(losses) == [4, 5, 6, 7, 8]  # no restart from step 0
    # The curve continues where the interrupted run was: same losses as the straight run.
    for step, loss in losses.items():
        assert loss == pytest.approx(straight.losses()[step], rel=1e-4), step
    assert resumed["trained_tokens"] == reference["trained_tokens"]
    state = json.loads((job / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert json.loads((job / "result.json").read_text())["steps"] == 8


def test_finished_job_returns_its_result_again(
    learnable_model_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    request = tiny_request(learnable_model_dir, dataset, hyperparameters={"max_steps": 2})
    first = run_training(request, tmp_path)
    events = EventLog()
    assert run_training(request, tmp_path, on_event=events) == first
    assert not events.of_type("metrics")


def test_should_stop_cancels_within_a_step(
    learnable_model_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    events = EventLog()
    polls = []

    def should_stop() -> bool:
        polls.append(len(events.of_type("metrics")))
        return len(events.of_type("metrics")) >= 2

    request = tiny_request(
        learnable_model_dir,
        dataset,
        hyperparameters={"max_steps": 50, "save_steps": 2, "gradient_accumulation_steps": 2},
    )
    result = run_training(request, tmp_path, on_event=events, should_stop=should_stop)
    assert result["status"] == "cancelled"
    assert result["steps"] == 2  # stopped right after the step that asked for it
    assert result["final_dir"] is None and not (tmp_path / "final").exists()
    # The checkpoint of step 2 is not written: a cancelled job saves nothing more.
    assert list_checkpoints(tmp_path / "checkpoints") == []
    assert len(polls) >= 4  # polled at every micro-batch, not once per epoch


def test_cancel_before_training_starts(
    learnable_model_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    request = tiny_request(learnable_model_dir, dataset)
    result = run_training(request, tmp_path, should_stop=lambda: True)
    assert result["status"] == "cancelled" and result["steps"] == 0
