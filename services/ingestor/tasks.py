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
from shared import pipeline
from shared.celery_app import (
    BUILD_DATASET_TASK,
    INGEST_QUEUE,
    TRAIN_JOB_TASK,
    make_celery,
    train_queue,
)
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

    def __init__(self, run: JobRun, interval: float = 0.5, mirror: Any = None) -> None:
        self._run = run
        self._mirror = mirror  # also writes the progress onto the job the build feeds
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
        if self._mirror is not None:
            self._mirror(self._progress)
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


def build(run: JobRun, common: CommonSettings, stores: Stores | None = None) -> Finished:
    """The ingestor's work: run the pipeline into the dataset's folder (from the start again
    when taken over from a runner that died)."""
    spec = checked_spec(DatasetSpec.model_validate(run.record["spec"]), common)
    folder = work_folder(run.record, common)
    log.info("event=dataset_build_started id=%s sources=%s", run.id, spec.sources)
    job_id = run.record.get("job_id") if stores is not None else None
    if job_id and stores is not None:
        pipeline.set_stage(stores.jobs, job_id, "ingest", status="running")
        pipeline.stage_event(stores.job_events, job_id, "ingest", f"Building {run.id}.")
    mirror = (lambda p: pipeline.set_stage(stores.jobs, job_id, "ingest", progress=p)) if (
        job_id and stores is not None) else None  # fmt: skip
    try:
        manifest = run_pipeline(ingest_spec(spec), folder, ProgressReporter(run, mirror=mirror))
    except ValueError as exc:
        raise JobFailed(str(exc), "invalid_sources", "sources") from exc
    except IngestError as exc:
        raise JobFailed(str(exc), "ingest_failed") from exc
    return Finished({"manifest": manifest})


def build_dataset(
    dataset_id: str,
    store: RecordStore,
    common: CommonSettings | None = None,
    owner: str = "",
    stores: Stores | None = None,
) -> dict[str, Any] | None:
    """Run one dataset build recorded under ``dataset_id``; the record tells how it ended.
    With ``stores``, a build that feeds a fine-tuning job (``job_id``) moves that job on."""
    common = common or CommonSettings()
    on_terminal = None if stores is None else JobFeeder(stores)
    runner = runner_for(store, owner or runner_identity("ingestor"), common,
                        label="Dataset build", on_terminal=on_terminal)  # fmt: skip
    return runner.run(dataset_id, lambda run: build(run, common, stores))


class JobFeeder:
    """The runner's terminal hook: a built dataset releases its job to the trainer (and sends
    the train task); a failed or cancelled one ends the job (``shared/pipeline.py``)."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores

    def __call__(self, dataset: dict[str, Any]) -> None:
        pipeline.dataset_finished(self._stores.jobs, self._stores.job_events, dataset, self._send)

    def _send(self, job_id: str) -> None:
        job = self._stores.jobs.get(job_id) or {}
        gpus = int((job.get("request") or {}).get("gpus") or 0)
        app.send_task(TRAIN_JOB_TASK, args=[job_id], queue=train_queue(gpus))


def dataset_store(common: CommonSettings | None = None) -> RecordStore:
    return Stores.connect(common or CommonSettings()).datasets


watch_orphans_when_ready(app, lambda stores: stores.datasets, BUILD_DATASET_TASK, INGEST_QUEUE)


@app.task(name=BUILD_DATASET_TASK, acks_late=True, reject_on_worker_lost=True)
def build_dataset_task(dataset_id: str) -> str:
    stores = Stores.connect(CommonSettings())
    record = build_dataset(dataset_id, stores.datasets, stores=stores)
    return record["status"] if record else "missing"
