"""Celery side of the ingestor: the ``ingest.build_dataset`` task on queue ``ingest``.

The task is a thin wrapper around ``build_dataset``, a plain function the tests call directly;
the claim, lease, cancel and redelivery rules are the shared job runner's (``shared/jobs``).
Whoever wrote the record, the build reads local sources and tokenizers only under the allowed
folders, fetches URLs only as the URL policy allows, and writes only into a folder of
DATASETS_DIR (``shared/paths.py``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from services.ingestor.pipeline import IngestError, IngestSpec, run_pipeline
from shared.celery_app import BUILD_DATASET_TASK, INGEST_QUEUE, make_celery
from shared.datasets import DatasetSpec, checked_source
from shared.job_records import RecordStore
from shared.jobs import Finished, JobFailed, JobRun, runner_identity
from shared.jobs.service import runner_for, watch_orphans_when_ready
from shared.paths import (
    TOKENIZER_FOLDER,
    AllowedRoots,
    RefusedReference,
    UrlPolicy,
    check_loadable,
    own_folder,
)
from shared.settings import CommonSettings, default_model_dir, ingestor_settings
from shared.stores import Stores

log = logging.getLogger(__name__)

app = make_celery("ingestor")


class ProgressReporter:
    """Writes stage progress to the record, at most every ``interval`` seconds per stage, and
    stops the build at the next report after someone asked to cancel it."""

    def __init__(self, run: JobRun, interval: float = 0.5) -> None:
        self._run = run
        self._interval = interval
        self._progress: dict[str, dict[str, Any]] = {}
        self._last_write = 0.0
        self._last_stage: str | None = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self._progress[stage] = {"done": done, "total": total}
        now = time.monotonic()
        finished = total is not None and done >= total
        if stage == self._last_stage and not finished and now - self._last_write < self._interval:
            return
        self._last_stage, self._last_write = stage, now
        self._run.update(progress=self._progress)
        self._run.raise_if_stopped()


def ingest_spec(spec: DatasetSpec) -> IngestSpec:
    tokenizer = spec.tokenizer or str(default_model_dir())
    return IngestSpec(tokenizer_path=tokenizer, **spec.model_dump(exclude={"tokenizer"}))


def checked_spec(spec: DatasetSpec, common: CommonSettings) -> DatasetSpec:
    """The spec with every local source and the tokenizer resolved under the allowed folders,
    and every URL allowed by the policy; JobFailed naming the first field that is not."""
    roots = AllowedRoots.of(common)
    urls = UrlPolicy.parse(ingestor_settings().url_allowed_hosts)
    sources = []
    for i, source in enumerate(spec.sources):
        try:
            # A host that does not resolve now is the fetch's failure to report (quarantined).
            sources.append(checked_source(source, roots, urls, unresolved_ok=True))
        except RefusedReference as exc:
            raise JobFailed(str(exc), "invalid_sources", f"sources[{i}]") from None
    tokenizer = spec.tokenizer
    try:
        tokenizer = tokenizer and check_loadable(tokenizer, roots, TOKENIZER_FOLDER)
    except RefusedReference as exc:
        raise JobFailed(str(exc), "invalid_tokenizer", "tokenizer") from None
    return spec.model_copy(update={"sources": sources, "tokenizer": tokenizer})


def work_folder(record: dict[str, Any], common: CommonSettings) -> Path:
    """The dataset's own folder: one folder of DATASETS_DIR, whatever the record says."""
    folder = own_folder(record.get("path"), common.datasets_dir)
    if folder is None:
        raise JobFailed(
            f"the dataset's folder {record.get('path')} is not a folder of DATASETS_DIR"
        )
    return folder


def build(run: JobRun, common: CommonSettings) -> Finished:
    """The ingestor's work: run the pipeline into the dataset's folder (from the start again
    when taken over from a runner that died)."""
    spec = checked_spec(DatasetSpec.model_validate(run.record["spec"]), common)
    folder = work_folder(run.record, common)
    log.info("event=dataset_build_started id=%s sources=%s", run.id, spec.sources)
    try:
        manifest = run_pipeline(ingest_spec(spec), folder, ProgressReporter(run))
    except ValueError as exc:
        raise JobFailed(str(exc), "invalid_sources", "sources") from exc
    except IngestError as exc:
        raise JobFailed(str(exc), "ingest_failed") from exc
    return Finished({"manifest": manifest})


def build_dataset(
    dataset_id: str, store: RecordStore, common: CommonSettings | None = None, owner: str = ""
) -> dict[str, Any] | None:
    """Run one dataset build recorded under ``dataset_id``; the record tells how it ended."""
    common = common or CommonSettings()
    runner = runner_for(store, owner or runner_identity("ingestor"), common, label="Dataset build")
    return runner.run(dataset_id, lambda run: build(run, common))


def dataset_store(common: CommonSettings | None = None) -> RecordStore:
    return Stores.connect(common or CommonSettings()).datasets


watch_orphans_when_ready(app, lambda stores: stores.datasets, BUILD_DATASET_TASK, INGEST_QUEUE)


@app.task(name=BUILD_DATASET_TASK, acks_late=True, reject_on_worker_lost=True)
def build_dataset_task(dataset_id: str) -> str:
    record = build_dataset(dataset_id, dataset_store())
    return record["status"] if record else "missing"
