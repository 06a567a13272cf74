"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning jobs API over the Celery ``train`` queues.

The controller validates the request (every bad field is named), records the job in Redis and
queues ``train.run_job`` on the queue for the GPUs it needs; the trainer service updates the
record, its events and checkpoints.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import Field, model_validator

from services.controller.dataset_uploads import StagedUploads, UploadLimits, read_form
from services.controller.datasets_api import (
    check_sources,
    check_tokenizer,
    read_json_object,
    record_dataset,
)
from services.controller.field_errors import InvalidFields, Problem, raise_if, validated
from services.controller.merges_api import cancel_merge
from services.controller.placement import check_gpus
from services.controller.records import (
    FINISHED_STATUSES,
    Backend,
    CancelOutcome,
    cancel_record,
    check_page_size,
)
from services.controller.records_api import RecordAPI, add_record_routes, backend_of
from shared import pipeline
from shared.celery_app import TRAIN_JOB_TASK, train_queue
from shared.datasets import DatasetSpec, new_dataset_id
from shared.deployments import UNDEPLOYING
from shared.job_records import RecordStore
from shared.paths import (
    AllowedRoots,
    RefusedReference,
    UrlPolicy,
    is_dataset_id,
    resolve_data_file,
    resolve_model,
)
from shared.settings import ingestor_settings
from shared.training import (
    FineTuneRequest,
    job_event,
    model_context_length,
    new_job_id,
    new_job_record,
)
from shared.training_presets import apply_preset

log = logging.getLogger(__name__)


class FineTuningJobRequest(FineTuneRequest):
    """``FineTuneRequest`` as sent: a ``preset``'s recipe fills what the body leaves out; raw
    ``sources`` (as ``/v1/datasets`` takes them) may stand for ``training_file``, and ``deploy``
    serves the result once trained (``shared/pipeline.py``)."""

    training_file: str | None = Field(  # type: ignore[assignment]
        None, min_length=1, description="dataset id (ds-...) or a file path; or give sources"
    )
    sources: list[str] | None = Field(
        None,
        min_length=1,
        description="raw data to ingest first, as /v1/datasets takes it (instead of "
        "training_file); tokenised with the job's model, budgeted to max_length",
    )
    deploy: bool = Field(
        False, description="deploy the result and succeed only once it answers a chat"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        try:
            return apply_preset(data)
        except KeyError as exc:
            raise ValueError(f"preset: {exc.args[0]}") from None


def check_request(
    req: FineTuneRequest, datasets: RecordStore, roots: AllowedRoots
) -> tuple[list[Problem], FineTuneRequest]:
    """What a job needs that only this deployment can tell: model, files, context. Returns the
    problems and the request with its paths resolved (dataset ids and Hub ids as sent)."""
    problems: list[Problem] = []
    update: dict[str, Any] = {}
    try:
        update["model"] = resolve_model(req.model, roots)
    except RefusedReference as exc:
        problems.append(("model", str(exc)))
    for field in ("training_file", "validation_file"):
        name = getattr(req, field)
        if name is None:
            continue
        try:
            found = resolve_data_file(name, roots, datasets)
            update[field] = name if is_dataset_id(name) else str(found)
        except RefusedReference as exc:
            problems.append((field, str(exc)))
    model = update.get("model", "")
    context = model_context_length(model) if model.startswith("/") else None
    if context is not None and req.hyperparameters.max_length > context:
        problems.append(
            (
                "hyperparameters.max_length",
                f"{req.hyperparameters.max_length} is beyond the model's context of {context}",
            )
        )
    return problems, req.model_copy(update=update)


def pipeline_problems(req: FineTuningJobRequest) -> list[Problem]:
    """Exactly one of training_file and sources; a deployed adapter must be merged first."""
    if req.training_file is not None and req.sources is not None:
        return [("sources", "give either training_file or sources, not both")]
    if req.training_file is None and req.sources is None:
        return [("training_file", "required (or give sources to ingest first)")]
    if req.deploy and req.method != "full" and not req.merge:
        return [("merge", "deploy: true serves a model: an adapter needs merge: true first")]
    return []


@dataclass(frozen=True)
class NewJob:
    """A job request as read: JSON, or a multipart form (the job's fields as JSON in ``job``,
    plus uploaded ``file``s, staged until ``create`` and added to ``sources``)."""

    request: FineTuningJobRequest
    uploads: StagedUploads | None = None
    dataset_id: str | None = None


async def read_job(request: Request, backend: Backend) -> NewJob:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return NewJob(validated(FineTuningJobRequest, await read_json_object(request)))
    dataset_id = new_dataset_id()
    uploads = StagedUploads(backend.common.datasets_dir / dataset_id)
    try:
        limits = UploadLimits.from_settings(ingestor_settings())
        fields = await read_form(dict(request.headers), request.stream(), uploads, limits)
        try:
            data = json.loads(fields.get("job") or "{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise InvalidFields([("job", "the job's fields as a JSON object")])
        if uploads.files:
            data["sources"] = [*(data.get("sources") or []), *uploads.paths()]
        return NewJob(validated(FineTuningJobRequest, data), uploads, dataset_id)
    except BaseException:
        uploads.discard()
        raise


def create_job(backend: Backend, new: NewJob) -> dict[str, Any]:
    """Check, then record the job (and the dataset it builds first); a refused request leaves
    nothing on disk."""
    try:
        return _create_job(backend, new)
    finally:
        if new.uploads is not None:
            new.uploads.discard()


def _create_job(backend: Backend, new: NewJob) -> dict[str, Any]:
    stores, req = backend.stores, new.request
    raise_if(pipeline_problems(req))
    dataset = (new.dataset_id or new_dataset_id()) if req.sources else None
    training_file = req.training_file or dataset
    body = req.model_dump(exclude={"sources", "deploy"}) | {"training_file": training_file}
    plain = FineTuneRequest.model_validate(body)
    to_check = plain.model_copy(update={"training_file": None}) if dataset else plain
    problems, checked = check_request(to_check, stores.datasets, AllowedRoots.of(backend.common))
    spec = None
    if dataset is not None:
        more, spec = check_dataset(backend, req, checked.model, new.uploads)
        problems += more
    raise_if(problems)
    raise_if(check_gpus(req.gpus, stores))
    checked = checked.model_copy(update={"training_file": plain.training_file})
    job_id = new_job_id()
    record = new_job_record(job_id, checked, str(backend.common.jobs_dir / job_id))
    record["status"] = "queued"
    if dataset is not None or req.deploy:
        merged = req.merge and req.method != "full"
        stages = pipeline.new_stages(dataset, merged, req.deploy)
        record |= {"stages": stages, "stage": next(iter(stages)), "deploy": req.deploy}
        record |= {"sources": req.sources, "handed_off_to": dataset}
    stores.jobs.create(record)
    stores.job_events.append(job_id, job_event(f"Created fine-tuning job: {job_id}"))
    if dataset is not None and spec is not None:
        folder = backend.common.datasets_dir / dataset
        if new.uploads is not None:
            new.uploads.commit()
        record_dataset(backend, dataset, spec, folder, job_id=job_id)
        pipeline.stage_event(stores.job_events, job_id, "ingest", f"Ingesting into {dataset}.")
    else:
        backend.celery.send_task(TRAIN_JOB_TASK, args=[job_id], queue=train_queue(req.gpus))
    log.info("event=job_queued id=%s model=%s method=%s", job_id, req.model, req.method)
    return record


def check_dataset(
    backend: Backend, req: FineTuningJobRequest, model: str, uploads: StagedUploads | None
) -> tuple[list[Problem], DatasetSpec | None]:
    """The dataset a job with ``sources`` builds first: its sources checked as /v1/datasets
    checks them, tokenised by the job's own model and cut to the job's max_length."""
    roots = AllowedRoots.of(backend.common)
    data = {"sources": req.sources, "max_length": req.hyperparameters.max_length, "seed": req.seed}
    try:
        spec = validated(DatasetSpec, data)
    except InvalidFields as exc:
        return exc.problems, None
    urls = UrlPolicy.parse(ingestor_settings().url_allowed_hosts)
    uploaded = uploads.paths() if uploads is not None else []
    problems, sources = check_sources(spec.sources, roots, urls, uploaded)
    tokenizer = model if model.startswith("/") else ""
    if tokenizer:
        more, tokenizer = check_tokenizer(tokenizer, roots)
        problems += [("model", text) for _, text in more]
    return problems, spec.model_copy(update={"sources": sources, "tokenizer": tokenizer})


def cancel_job(backend: Backend, job_id: str) -> CancelOutcome | None:
    """Cancel stops the job's current stage: its dataset build, its training (the runner sees
    ``cancel_requested``), its merge (``merge_id``) or its deployment."""
    stores = backend.stores
    record = stores.jobs.get(job_id)
    if record and record.get("status") not in FINISHED_STATUSES:
        holder = record.get("handed_off_to") or ""
        if holder.startswith(pipeline.DEPLOY_PREFIX):
            cancel_deploy_stage(backend, record)
        elif record.get("merge_id"):
            cancel_merge(backend, record["merge_id"])
        elif holder and holder == (record.get("stages") or {}).get("ingest", {}).get("id"):
            cancel_record(stores.datasets, holder)
            pipeline.set_stage(stores.jobs, job_id, "ingest", status="cancelled")
    outcome = cancel_record(stores.jobs, job_id)
    if outcome is not None and outcome.stopped_now:
        stores.job_events.append(job_id, job_event("Job cancelled before it started."))
        log.info("event=job_cancelled id=%s queued=true", job_id)
    return outcome


def cancel_deploy_stage(backend: Backend, record: dict[str, Any]) -> None:
    """Stop serving the model the job was deploying, and end the job cancelled."""
    stores, holder = backend.stores, record["handed_off_to"]
    name = holder.removeprefix(pipeline.DEPLOY_PREFIX)
    deployment = stores.deployments.get(name)
    if deployment is not None and deployment.get("job_id") == record["id"]:
        stores.deployments.update(name, status=UNDEPLOYING)
    outcome = {"status": "cancelled", "message": f"Deployment of {name} stopped; job cancelled."}
    pipeline.end_job(stores.jobs, stores.job_events, record["id"], holder, "deploy", outcome)


_FORM_SCHEMA = {
    "type": "object",
    "properties": {
        "job": {"type": "string", "description": "the JSON body's fields, as JSON"},
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
    "required": ["job"],
}
# JSON, or a form with uploads (read by the route, documented here as the datasets API does).
BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/FineTuningJobRequest"}},
            "multipart/form-data": {"schema": _FORM_SCHEMA},
        },
    }
}


def document_request_schema(document: dict[str, Any]) -> None:
    """Put ``FineTuningJobRequest`` (and the models it uses) into the OpenAPI components, where
    the route's body document points: the route reads its body itself (JSON or a form)."""
    schema = FineTuningJobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault("FineTuningJobRequest", schema)


JOBS: RecordAPI[NewJob] = RecordAPI(
    path="/v1/fine_tuning/jobs",
    kind="fine_tuning_job",
    id_param="fine_tuning_job_id",
    store=lambda stores: stores.jobs,
    create=create_job,
    read_body=read_job,
    body_doc=BODY_DOC,
    events=lambda stores: stores.job_events,
    cancel=cancel_job,
    noun="fine-tuning job",
    tag="fine-tuning",
)

router = JOBS.router()


@router.get("/{fine_tuning_job_id}/checkpoints")
def list_checkpoints(fine_tuning_job_id: str, request: Request, limit: int = 10) -> dict:
    """Newest first; the trainer adds one per save (OpenAI's ``fine_tuning.job.checkpoint``)."""
    check_page_size(limit)
    job = JOBS.get(backend_of(request), fine_tuning_job_id)
    checkpoints = list(reversed(job.get("checkpoints", [])))
    return {"object": "list", "data": checkpoints[:limit], "has_more": len(checkpoints) > limit}


add_record_routes(router, JOBS)
