"""``/v1/datasets``: build a training set from CAMEL, ShareGPT, Alpaca or your own files.

The controller validates and records the request, then queues ``ingest.build_dataset`` for the
ingestor service; progress and the manifest are read back from the shared record in Redis. The
body is a JSON ``DatasetSpec``, or a multipart form with the same fields (``sources`` as a JSON
list or comma-separated) plus uploaded ``file``s, checked while they stream in and saved into the
dataset's ``uploads/`` only once the whole request is valid (``dataset_uploads.py``).

A local source is a file or folder under the allowed folders, a URL one the ingestor's URL policy
allows (``shared/paths.py``); the ingestor checks both again when it builds.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from services.controller.dataset_uploads import StagedUploads, UploadLimits, read_form
from services.controller.field_errors import InvalidFields, Problem, raise_if, validated
from services.controller.records import Backend
from services.controller.records_api import RecordAPI, add_record_routes
from shared.celery_app import BUILD_DATASET_TASK, INGEST_QUEUE
from shared.datasets import DatasetSpec, checked_source, new_dataset_id, new_dataset_record
from shared.paths import (
    TOKENIZER_FOLDER,
    AllowedRoots,
    RefusedReference,
    UrlPolicy,
    resolve_model,
    written_as_path,
)
from shared.settings import ingestor_settings

log = logging.getLogger(__name__)

_FORM_FIELDS = ("tokenizer", "max_length", "keep_lang", "skip_lang", "reduce_rep", "seed")


@dataclass(frozen=True)
class NewDataset:
    id: str
    folder: Path
    spec: DatasetSpec
    uploads: StagedUploads | None = None


def check_sources(
    sources: list[str], roots: AllowedRoots, urls: UrlPolicy, uploaded: list[str]
) -> tuple[list[Problem], list[str]]:
    """Each source is a known Hub key, an allowed URL, a file or folder under the roots, or one
    of this request's uploads; returns the problems and the sources with their paths resolved."""
    problems: list[Problem] = []
    checked: list[str] = []
    for i, source in enumerate(sources):
        if source in uploaded:
            checked.append(source)
            continue
        try:
            checked.append(checked_source(source, roots, urls, unresolved_ok=True))
        except RefusedReference as exc:
            problems.append((f"sources[{i}]", str(exc)))
    return problems, checked


def check_tokenizer(tokenizer: str, roots: AllowedRoots) -> tuple[list[Problem], str]:
    """A tokenizer folder under the roots, a model's name under MODELS_DIR, or else a Hub id
    (checked by the ingestor when it loads it)."""
    if not tokenizer:
        return [], tokenizer
    try:
        return [], resolve_model(tokenizer, roots, kind=TOKENIZER_FOLDER)
    except RefusedReference as exc:
        hub_name = "/" not in tokenizer and not written_as_path(tokenizer)  # "gpt2"
        return ([], tokenizer) if hub_name else ([("tokenizer", str(exc))], tokenizer)


async def read_request(request: Request, backend: Backend) -> NewDataset:
    """JSON body, or multipart form fields plus uploaded files (staged until ``create``)."""
    dataset_id = new_dataset_id()
    folder = backend.common.datasets_dir / dataset_id
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        spec = validated(DatasetSpec, await read_json_object(request))
        return NewDataset(dataset_id, folder, spec)
    uploads = StagedUploads(folder)
    try:
        limits = UploadLimits.from_settings(ingestor_settings())
        fields = await read_form(dict(request.headers), request.stream(), uploads, limits)
        data = _form_data(fields, uploads.paths())
        return NewDataset(dataset_id, folder, validated(DatasetSpec, data), uploads)
    except BaseException:
        uploads.discard()
        raise


async def read_json_object(request: Request) -> Any:
    try:
        data = await request.json()
    except ValueError as exc:
        raise InvalidFields([("body", f"malformed JSON ({exc})")]) from None
    if not isinstance(data, dict):
        raise InvalidFields([("body", "expected a JSON object")])
    return data


def _form_data(form: dict[str, str], uploaded: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {f: v for f in _FORM_FIELDS if (v := form.get(f)) not in (None, "")}
    raw = (form.get("sources") or "").strip()
    sources: list[str] = []
    if raw.startswith("["):
        try:
            sources = json.loads(raw)
        except ValueError:
            raise InvalidFields([("sources", "not a JSON list")]) from None
    elif raw:
        sources = [s.strip() for s in raw.split(",") if s.strip()]
    data["sources"] = sources + uploaded if isinstance(sources, list) else sources
    return data


def create_dataset(backend: Backend, new: NewDataset) -> dict[str, Any]:
    """Check the sources and tokenizer, then put the uploads in place and record the build;
    a refused request leaves nothing on disk."""
    uploaded = new.uploads.paths() if new.uploads else []
    try:
        roots = AllowedRoots.of(backend.common)
        urls = UrlPolicy.parse(ingestor_settings().url_allowed_hosts)
        problems, sources = check_sources(new.spec.sources, roots, urls, uploaded)
        tokenizer_problems, tokenizer = check_tokenizer(new.spec.tokenizer, roots)
        raise_if(problems + tokenizer_problems)
        spec = new.spec.model_copy(update={"sources": sources, "tokenizer": tokenizer})
        if new.uploads:
            new.uploads.commit()
        return record_dataset(backend, new.id, spec, new.folder)
    except BaseException:
        if new.uploads and new.uploads.files:
            shutil.rmtree(new.folder, ignore_errors=True)
        raise
    finally:
        if new.uploads:
            new.uploads.discard()


def record_dataset(
    backend: Backend, dataset_id: str, spec: DatasetSpec, folder: Path, job_id: str | None = None
) -> dict[str, Any]:
    """Record a checked build and queue it; ``job_id``: the fine-tuning job it feeds."""
    record = new_dataset_record(dataset_id, spec, str(folder)).model_dump()
    if job_id is not None:
        record["job_id"] = job_id
    backend.stores.datasets.create(record)
    backend.celery.send_task(BUILD_DATASET_TASK, args=[dataset_id], queue=INGEST_QUEUE)
    log.info("event=dataset_queued id=%s sources=%s", dataset_id, spec.sources)
    return record


def _form_schema() -> dict[str, Any]:
    fields = {name: {"type": "string"} for name in (*_FORM_FIELDS, "sources")}
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}
    return {"type": "object", "properties": {**fields, "file": files}, "required": ["sources"]}


# FastAPI cannot take one body as JSON or a form, so the route reads it and documents both here.
BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DatasetSpec.model_json_schema()},
            "multipart/form-data": {"schema": _form_schema()},
        },
    }
}

DATASETS: RecordAPI[NewDataset] = RecordAPI(
    path="/v1/datasets",
    kind="dataset",
    id_param="dataset_id",
    store=lambda stores: stores.datasets,
    create=create_dataset,
    read_body=read_request,
    body_doc=BODY_DOC,
)

router = add_record_routes(DATASETS.router(), DATASETS)
