"""Attacks on server files through the record APIs and the job services behind them.

A stack whose allowed folders are the test's own (MODELS_DIR, DATASETS_DIR, JOBS_DIR,
IMPORT_DIR under tmp_path): requests naming files elsewhere are refused with one message that
tells nothing of what exists there, and records written straight into Redis (by anyone with a
hand on it) do not make the ingestor or the trainer read outside those folders either.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.celery_app import (
    BUILD_DATASET_TASK,
    INGEST_QUEUE,
    TRAIN_JOB_TASK,
    make_celery,
    train_queue,
)
from shared.datasets import DatasetSpec, new_dataset_record
from shared.settings import CommonSettings
from shared.stores import Stores
from shared.training import FineTuneRequest, new_job_record
from tests.support import TERMINAL, Stack, wait_record, write_conversations

ROOTS = "(MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR)"


@pytest.fixture
def stack(start_stack: Callable[..., Stack], tmp_path: Path, tiny_model_dir: Path) -> Stack:
    """The stack, the tiny model published as MODELS_DIR/tiny, IMPORT_DIR/train.jsonl, and
    ``secret.jsonl`` beside the allowed folders (a file that exists elsewhere, as /etc/shadow)."""
    imports = tmp_path / "imports"
    imports.mkdir()
    write_conversations(imports / "train.jsonl")
    (tmp_path / "secret.jsonl").write_text('{"conversations": [{"from": "human", "value": "s"}]}')
    stack = start_stack({"IMPORT_DIR": str(imports)})
    shutil.copytree(tiny_model_dir, Path(stack.env["MODELS_DIR"]) / "tiny")
    return stack


@pytest.fixture
def common(stack: Stack) -> CommonSettings:
    env = stack.env
    return CommonSettings(redis_url=env["REDIS_URL"], redis_key_prefix=env["REDIS_KEY_PREFIX"])


def refused(api: str, path: str, body: dict, param: str) -> str:
    response = httpx.post(f"{api}{path}", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    return error["message"]


def test_dataset_sources_outside_the_roots_are_refused_alike(stack: Stack, tmp_path: Path) -> None:
    secret = str(tmp_path / "secret.jsonl")
    climbing = str(tmp_path / "imports" / ".." / "secret.jsonl")
    answers = {
        source: refused(stack.url, "/v1/datasets", {"sources": ["alpaca", source]}, "sources[1]")
        for source in ("/etc/shadow", secret, climbing, str(tmp_path / "missing.jsonl"))
    }
    shapes = {message.replace(repr(source), "<s>") for source, message in answers.items()}
    assert len(shapes) == 1, answers
    assert shapes.pop().endswith(f"nor a file or folder under an allowed folder {ROOTS}")


def test_a_training_file_climbing_out_with_dotdot_is_refused(
    stack: Stack, tmp_path: Path, tiny_model_dir: Path
) -> None:
    train = str(tmp_path / "imports" / "train.jsonl")
    climbing = str(tmp_path / "imports" / ("../" * 16) / "etc" / "passwd")
    for field, name in (("training_file", climbing), ("validation_file", "/etc/passwd")):
        body = {
            "model": "tiny",
            "training_file": train,
            "hyperparameters": {"max_length": 128},
            field: name,
        }
        message = refused(stack.url, "/v1/fine_tuning/jobs", body, field)
        assert message == f"{field}: {name!r} is not a file under an allowed folder {ROOTS}"
    # The same model by a link out of MODELS_DIR is not a way out either.
    (Path(stack.env["MODELS_DIR"]) / "linked").symlink_to(tiny_model_dir)
    body = {"model": str(Path(stack.env["MODELS_DIR"]) / "linked"), "training_file": train}
    assert "under an allowed folder" in refused(stack.url, "/v1/fine_tuning/jobs", body, "model")


def test_evals_and_deployments_name_folders_under_the_roots_only(stack: Stack) -> None:
    assert "under an allowed folder" in refused(
        stack.url, "/v1/evals", {"model": "/usr", "tasks": ["x"]}, "model"
    )
    body = {"model": "org/model", "tasks": ["x"], "data_dir": "/etc"}
    assert "under an allowed folder" in refused(stack.url, "/v1/evals", body, "data_dir")
    message = refused(stack.url, "/v1/models/mine/deploy", {"path": "/usr/lib"}, "path")
    assert message.endswith(f"under an allowed folder {ROOTS}")


def test_an_upload_refused_by_a_later_field_leaves_nothing_on_disk(
    stack: Stack, tmp_path: Path
) -> None:
    data = (tmp_path / "imports" / "train.jsonl").read_bytes()
    response = httpx.post(
        f"{stack.url}/v1/datasets",
        files={"file": ("train.jsonl", data)},
        data={"sources": "alpaca,/etc/shadow"},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "sources[1]"
    datasets = Path(stack.env["DATASETS_DIR"])
    assert not datasets.exists() or list(datasets.rglob("*")) == []


def test_forged_records_do_not_make_the_services_read_outside_the_roots(
    stack: Stack, common: CommonSettings, tmp_path: Path
) -> None:
    """Records written straight into Redis, past the API's checks: the ingestor and the trainer
    check them again and fail them without reading the files."""
    stack.start("ingestor")
    stack.start("trainer")
    stores = Stores.connect(common)
    datasets, jobs = Path(stack.env["DATASETS_DIR"]), Path(stack.env["JOBS_DIR"])
    model = str(Path(stack.env["MODELS_DIR"]) / "tiny")
    spec = DatasetSpec(sources=["/etc/shadow", str(tmp_path / "secret.jsonl")], tokenizer=model)
    dataset = new_dataset_record("ds-forged", spec, str(datasets / "ds-forged"))
    stores.datasets.create(dataset.model_dump())
    climbing = str(tmp_path / "imports" / ("../" * 16) / "etc" / "passwd")
    request = FineTuneRequest(model=model, training_file=climbing)
    job = new_job_record("ftjob-forged", request, str(jobs / "ftjob-forged"))
    stores.jobs.create({**job, "status": "queued"})
    celery = make_celery("faults", common)
    celery.send_task(BUILD_DATASET_TASK, args=["ds-forged"], queue=INGEST_QUEUE)
    celery.send_task(TRAIN_JOB_TASK, args=["ftjob-forged"], queue=train_queue(0))

    built = wait_record(f"{stack.url}/v1/datasets/ds-forged", TERMINAL, 120)
    assert built["status"] == "failed" and built["error"]["param"] == "sources[0]", built
    assert f"under an allowed folder {ROOTS}" in built["error"]["message"]
    assert not (datasets / "ds-forged").exists()
    trained = wait_record(f"{stack.url}/v1/fine_tuning/jobs/ftjob-forged", TERMINAL, 120)
    assert trained["status"] == "failed" and trained["error"]["param"] == "training_file"
    assert f"is not a file under an allowed folder {ROOTS}" in trained["error"]["message"]
    assert not (jobs / "ftjob-forged").exists()
