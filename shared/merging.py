"""LoRA merge requests and records: the contract between the controller, the trainer and the
merger service.

A merge folds a LoRA adapter into its base model and publishes the result as
``MODELS_DIR/<name>``, a plain model folder that serving loads like any other. The controller
(``POST /v1/merges``) and the trainer (a job with ``merge: true``) both record merges here. Only
the trainer's hand-off links a merge to the fine-tuning job it finishes (``record_merge``'s
``job_id``): a client cannot name a job for its merge to change. Pure data: no torch here.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.celery_app import MERGE_QUEUE, MERGE_TASK

MERGE_KIND = "merge"
MergeStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_MERGE_STATUSES = ("succeeded", "failed", "cancelled")
MergeDtype = Literal["auto", "bf16", "fp16", "fp32"]

JOB_ID_PREFIX = "ftjob-"
# A published model is a folder name under MODELS_DIR (and the name serving lists).
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHARD_SIZE_PATTERN = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)$", re.IGNORECASE)
# Folder names that say nothing about the adapter: the trainer writes ``<job dir>/final``.
_GENERIC_FOLDERS = ("final", "adapter", "lora")


class MergeRequest(BaseModel):
    """Body of ``POST /v1/merges``."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(min_length=1, description="folder of the base model")
    adapter: str = Field(
        min_length=1, description="folder of a PEFT LoRA adapter, or a fine-tuning job id"
    )
    name: str | None = Field(None, description="publish as MODELS_DIR/<name>; default: derived")
    dtype: MergeDtype = "auto"
    overwrite: bool = Field(
        False,
        description="replace a published model of that name; refused unless the deployment "
        "allows it (MODELS_ALLOW_OVERWRITE), and never for the default model",
    )
    max_shard_size: str = "5GB"

    @model_validator(mode="before")
    @classmethod
    def _no_job_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "job_id" in data:
            raise ValueError(
                "job_id is not a request field: only a fine-tuning job with merge: true links "
                "its merge to itself"
            )
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        if name is not None and not MODEL_NAME_PATTERN.match(name):
            raise ValueError(
                f"{name!r} is not a valid model name (letters, digits, '.', '_' and '-', "
                "starting with a letter or digit, at most 128 characters)"
            )
        return name

    @field_validator("max_shard_size")
    @classmethod
    def _valid_shard_size(cls, size: str) -> str:
        if not SHARD_SIZE_PATTERN.match(size.strip()):
            raise ValueError(f"{size!r} is not a size such as '5GB', '500MB' or '2GiB'")
        return size.strip()

    @property
    def adapter_job_id(self) -> str | None:
        """The fine-tuning job whose result is the adapter, when ``adapter`` names one."""
        return self.adapter if self.adapter.startswith(JOB_ID_PREFIX) else None


def default_merge_name(request: MergeRequest, job: dict[str, Any] | None = None) -> str:
    """The name to publish under when the request gives none.

    From a fine-tuning job: the name the job gives its model (``<base>-<suffix or id>``), so the
    merged model is served under the name the job shows. From a folder: the folder's name (its
    parent's for ``.../<job id>/final``).
    """
    if job is not None:
        name = job.get("fine_tuned_model") or (
            f"{Path(str(job.get('model', 'model')).rstrip('/')).name}-"
            f"{job.get('suffix') or job['id']}"
        )
    else:
        # Only the name is wanted: no ``~`` expansion (an unknown ~user would raise).
        folder = Path(request.adapter.rstrip("/"))
        if folder.name.lower() in _GENERIC_FOLDERS and folder.parent.name:
            folder = folder.parent
        name = folder.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip("._-")[:128]
    return name or "merged-model"


def new_merge_id() -> str:
    return f"merge-{uuid.uuid4().hex[:20]}"


def new_merge_record(
    merge_id: str, request: MergeRequest, name: str, job_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": merge_id,
        "object": "merge",
        "created_at": int(time.time()),
        "status": "queued",
        "base_model": request.base_model,
        "adapter": request.adapter,
        "name": name,
        "dtype": request.dtype,
        "overwrite": request.overwrite,
        "max_shard_size": request.max_shard_size,
        "job_id": job_id,
        # Filled by the merger: the folder it published, its check of the merged weights.
        "output_dir": None,
        "verification": None,
        "progress": None,
        "started_at": None,
        "finished_at": None,
        "duration_s": None,
        "error": None,
        "request": request.model_dump(),
        "cancel_requested": False,
    }


def record_merge(
    store: Any, request: MergeRequest, *, jobs: Any = None, job_id: str | None = None
) -> dict[str, Any]:
    """Record the merge (status ``queued``) without sending it yet.

    ``store`` is the merges ``RecordStore``; ``jobs`` (the fine-tuning jobs store), when given,
    names the merged model after the job it comes from if the request names none. ``job_id``:
    the fine-tuning job this merge finishes (the trainer's hand-off only).
    """
    name = request.name
    if name is None:
        named_by = request.adapter_job_id or job_id
        job = jobs.get(named_by) if jobs is not None and named_by else None
        name = default_merge_name(request, job)
    record = new_merge_record(new_merge_id(), request, name, job_id)
    store.create(record)
    return record


def send_merge(celery_app: Any, store: Any, record: dict[str, Any]) -> None:
    """Send ``merge.run`` for a recorded merge to the merger."""
    try:
        celery_app.send_task(MERGE_TASK, args=[record["id"]], queue=MERGE_QUEUE)
    except Exception as exc:  # broker down: no merger will ever see it, so say so on the record
        error = {"code": "queue_unavailable", "message": f"could not queue the merge: {exc!r}"}
        store.update(record["id"], status="failed", error=error, finished_at=int(time.time()))
        raise


def queue_merge(
    celery_app: Any, store: Any, request: MergeRequest, *, jobs: Any = None
) -> dict[str, Any]:
    """Record the merge and send it to the merger (``record_merge`` then ``send_merge``)."""
    record = record_merge(store, request, jobs=jobs)
    send_merge(celery_app, store, record)
    return record
