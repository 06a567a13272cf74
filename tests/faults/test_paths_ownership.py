"""Ownership attacks on merges, against a controller and a real merger.

A merge naming another job (``job_id``) used to let its cancel flip that finished job to
``cancelled``; ``overwrite: true`` used to replace any published model, the default one too.
Now ``job_id`` is not a request field, ``overwrite`` needs MODELS_ALLOW_OVERWRITE, the default
model is never replaced, and a forged merge record cannot make the merger do any of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.celery_app import MERGE_QUEUE, MERGE_TASK, make_celery
from shared.merging import MergeRequest, new_merge_record
from shared.settings import DEFAULT_MODEL_NAME, CommonSettings
from shared.stores import Stores
from tests.support import TERMINAL, Stack, wait_record


@pytest.fixture
def stack(start_stack: Callable[..., Stack]) -> Stack:
    stack = start_stack()
    models = Path(stack.env["MODELS_DIR"])
    for name in (DEFAULT_MODEL_NAME, "published"):
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text('{"kept": true}')
    return stack


@pytest.fixture
def stores(stack: Stack) -> Stores:
    env = stack.env
    return Stores.connect(
        CommonSettings(redis_url=env["REDIS_URL"], redis_key_prefix=env["REDIS_KEY_PREFIX"])
    )


@pytest.fixture
def adapter(tmp_path: Path) -> str:
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    return str(folder)


def test_a_merge_cannot_name_another_jobs_id(
    stack: Stack, stores: Stores, tiny_model_dir: Path, adapter: str
) -> None:
    stores.jobs.create({"id": "ftjob-victim", "status": "succeeded", "model": "m"})
    body = {"base_model": str(tiny_model_dir), "adapter": adapter, "job_id": "ftjob-victim"}
    response = httpx.post(f"{stack.url}/v1/merges", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "job_id"
    assert httpx.get(f"{stack.url}/v1/merges").json()["data"] == []
    assert stores.jobs.get("ftjob-victim")["status"] == "succeeded"


@pytest.mark.parametrize("name", ["published", DEFAULT_MODEL_NAME])
def test_published_models_are_not_overwritten(
    stack: Stack, tiny_model_dir: Path, adapter: str, name: str
) -> None:
    body = {"base_model": str(tiny_model_dir), "adapter": adapter, "name": name}
    for overwrite in (True, False):
        response = httpx.post(f"{stack.url}/v1/merges", json={**body, "overwrite": overwrite})
        assert response.status_code == 400, response.text
        param = response.json()["error"]["param"]
        assert param == ("overwrite" if overwrite and name == "published" else "name")


def test_a_forged_merge_record_cannot_replace_the_default_model_or_end_a_job(
    stack: Stack, stores: Stores, tiny_model_dir: Path, adapter: str
) -> None:
    """Written straight into Redis: the merger checks it again and publishes nothing; its cancel
    leaves the job it names (which never handed off to it) alone."""
    stack.start("merger")
    models = Path(stack.env["MODELS_DIR"])
    request = MergeRequest(base_model=str(tiny_model_dir), adapter=adapter, overwrite=True)
    for merge_id, name in (("merge-default", DEFAULT_MODEL_NAME), ("merge-pub", "published")):
        stores.merges.create(new_merge_record(merge_id, request, name))
    celery = make_celery("faults", CommonSettings(**_redis(stack)))
    for merge_id in ("merge-default", "merge-pub"):
        celery.send_task(MERGE_TASK, args=[merge_id], queue=MERGE_QUEUE)
    for merge_id, says in (("merge-default", "the default model"), ("merge-pub", "overwrite")):
        record = wait_record(f"{stack.url}/v1/merges/{merge_id}", TERMINAL, 120)
        assert record["status"] == "failed" and says in record["error"]["message"], record
    for name in (DEFAULT_MODEL_NAME, "published"):
        assert (models / name / "config.json").read_text() == '{"kept": true}'

    stores.jobs.create({"id": "ftjob-victim", "status": "succeeded", "model": "m"})
    forged = new_merge_record("merge-forged", request, "other", job_id="ftjob-victim")
    stores.merges.create(forged)
    cancelled = httpx.post(f"{stack.url}/v1/merges/merge-forged/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert stores.jobs.get("ftjob-victim")["status"] == "succeeded"


def _redis(stack: Stack) -> dict[str, str]:
    return {
        "redis_url": stack.env["REDIS_URL"],
        "redis_key_prefix": stack.env["REDIS_KEY_PREFIX"],
    }
