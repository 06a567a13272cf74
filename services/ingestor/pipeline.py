"""The whole ingestion, as one plain function: download -> convert -> filter -> split -> merge.

``run_pipeline`` is what the REST API and the Celery task call, and what ``python -m
services.ingestor run`` runs. ``build_dataset`` is its second half (filter, split, merge over
``*_conv.json`` files), shared with the ``merge`` command. The stages themselves are in
``stages/``; this module only strings them together and keeps the books.

Work folder layout: ``sources/`` (URL downloads, extracted archives of local sources),
``converted/<name>_conv.json``, then ``dataset.jsonl``, ``dataset.json``, ``manifest.json`` and
``rejected.jsonl``. Hub downloads live in the shared download folder (see ``run_pipeline``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.ingestor.files.fetch import UrlFetch
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.manifest import (
    MANIFEST_FILE,
    SourceReport,
    dataset_manifest,
    write_manifest,
)
from services.ingestor.rules.language import LanguagePolicy
from services.ingestor.rules.tokens import TurnTokenCounter
from services.ingestor.sources import Source, resolve_sources
from services.ingestor.stages.convert import convert_source
from services.ingestor.stages.download import FetchedSource, fetch_source
from services.ingestor.stages.filter import filter_conv_file
from services.ingestor.stages.merge import MergeResult, write_dataset
from services.ingestor.stages.parallel import OrderedMap, ordered_map
from services.ingestor.stages.split import SampleStore, split_file
from shared.settings import ingestor_settings

__all__ = [
    "DatasetBuild",
    "IngestError",
    "IngestSpec",
    "build_dataset",
    "load_tokenizer",
    "run_pipeline",
    "write_manifest",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]


class IngestError(RuntimeError):
    """The run cannot produce a dataset (e.g. no source could be downloaded)."""


@dataclass
class IngestSpec:
    sources: list[str]  # keys, local paths or http(s) URLs
    tokenizer_path: str
    max_length: int = 2048
    keep_lang: str = "en"
    skip_lang: str | None = None
    reduce_rep: bool = False
    seed: int = 0
    workers: int | None = None

    def validate(self) -> None:
        """Raise ValueError for settings no run could honour (the REST layer answers 400)."""
        if not self.sources:
            raise ValueError("sources: give at least one dataset key, local path or URL")
        if self.max_length <= 0:
            raise ValueError(f"max_length must be positive, got {self.max_length}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if not self.keep_lang:
            raise ValueError("keep_lang: give a language code such as 'en', or 'all'")

    @property
    def policy(self) -> LanguagePolicy:
        return LanguagePolicy(self.keep_lang, self.skip_lang, self.reduce_rep)


class StageClock:
    """Stage timings for the manifest, and the progress callback with running totals."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._started = time.monotonic()

    def notify(self, stage: str, done: int, total: int | None) -> None:
        if self.progress:
            self.progress(stage, done, total)

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self._started, 3)
        self._started = now

    def stage(self, stage: str, total: int | None = None) -> StageProgress:
        return StageProgress(self, stage, total)


class StageProgress:
    """``on_progress(done)`` of one part (a source) of a stage, reported as the stage's running
    total; ``advance`` moves on to the next part."""

    def __init__(self, clock: StageClock, stage: str, total: int | None) -> None:
        self.clock = clock
        self.stage = stage
        self.total = total
        self.before = 0

    def __call__(self, done: int) -> None:
        self.clock.notify(self.stage, self.before + done, self.total)

    def advance(self, done: int) -> None:
        self.before += done


@dataclass
class DatasetBuild:
    """What the stages of one build share: the budget, the policy, the seed, the process pool,
    the quarantine file, the clock and what each source went through so far."""

    counter: TurnTokenCounter
    max_length: int
    policy: LanguagePolicy
    seed: int
    map_fn: OrderedMap
    rejected: RejectedLog
    clock: StageClock = field(default_factory=lambda: StageClock(None))
    reports: dict[str, SourceReport] = field(default_factory=dict)


def load_tokenizer(path: str) -> TurnTokenCounter:
    try:
        return TurnTokenCounter(path)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"tokenizer {path!r} cannot be loaded: {exc}") from exc


def _check_work_dir(sources: list[Source], work_dir: Path) -> None:
    for source in sources:
        folder = Path(source.location)
        if source.kind == "local" and folder.is_dir() and work_dir.is_relative_to(folder):
            raise ValueError(
                f"source {source.location!r} contains the work folder {str(work_dir)!r}: its "
                "own outputs would be read back as input"
            )


def run_pipeline(
    spec: IngestSpec,
    work_dir: Path,
    progress: Progress | None = None,
    *,
    download_dir: Path | None = None,
) -> dict:
    """download → convert → clean/filter → split → merge into work_dir; returns the manifest
    dict (also written to work_dir/manifest.json). progress(stage, done, total) is called as
    work advances (stages: "download", "convert", "filter", "split", "merge").

    Hub datasets are downloaded once into ``download_dir`` (default INGEST_DOWNLOAD_DIR, the
    download command's folder) and shared by every run; URLs and archives of local sources
    are fetched and extracted under ``work_dir/sources``.
    """
    spec.validate()
    sources = resolve_sources(spec.sources)
    work_dir = Path(work_dir).resolve()
    _check_work_dir(sources, work_dir)
    counter = load_tokenizer(spec.tokenizer_path)
    work_dir.mkdir(parents=True, exist_ok=True)
    hub_dir = Path(download_dir or ingestor_settings().download_dir)
    log.info("event=ingest_start work_dir=%s sources=%s", work_dir, [s.name for s in sources])
    with (
        RejectedLog(work_dir / "rejected.jsonl") as rejected,
        ordered_map(spec.workers) as map_fn,
    ):
        build = DatasetBuild(
            counter, spec.max_length, spec.policy, spec.seed, map_fn, rejected, StageClock(progress)
        )
        build.reports.update((s.name, SourceReport.of(s)) for s in sources)
        fetched = _download(sources, hub_dir, work_dir / "sources", build)
        conv_files = _convert(fetched, work_dir / "converted", build)
        manifest = build_dataset(conv_files, work_dir, build)
    manifest["spec"] = asdict(spec)
    write_manifest(work_dir, manifest)
    return manifest


def _download(
    sources: list[Source], hub_dir: Path, sources_dir: Path, build: DatasetBuild
) -> list[FetchedSource]:
    """Hub datasets into the shared ``hub_dir``, the rest into the run's ``sources_dir``."""
    fetch = UrlFetch.from_settings(ingestor_settings())
    fetched = []
    build.clock.notify("download", 0, len(sources))
    for done, source in enumerate(sources, 1):
        folder = hub_dir if source.kind == "hub" else sources_dir
        item = fetch_source(source, folder, build.rejected, fetch)
        build.reports[source.name].stages["download"] = item.counts
        build.reports[source.name].unsafe_archive_members = item.unsafe_members
        fetched.append(item)
        build.clock.notify("download", done, len(sources))
    build.clock.lap("download")
    if not any(item.roots for item in fetched):
        failed = ", ".join(s.name for s in sources)
        raise IngestError(f"no source could be downloaded or read: {failed}")
    return fetched


def _convert(
    fetched: list[FetchedSource], out_dir: Path, build: DatasetBuild
) -> list[tuple[str, Path]]:
    conv_files: list[tuple[str, Path]] = []
    progress = build.clock.stage("convert")
    for item in fetched:
        name = item.source.name
        result = convert_source(
            name,
            item.roots,
            out_dir,
            forced_format=item.source.format,
            seed=build.seed,
            map_fn=build.map_fn,
            rejected=build.rejected,
            on_progress=progress,
        )
        progress.advance(result.counts.received)
        build.reports[name].stages["convert"] = result.counts
        build.reports[name].formats = result.formats
        conv_files.append((name, result.path))
    build.clock.lap("convert")
    return conv_files


def build_dataset(
    conv_files: list[tuple[str, Path]],
    out_dir: Path,
    build: DatasetBuild,
    json_name: str = "dataset.json",
) -> dict:
    """filter → split → merge of ``(source name, conv file)`` pairs into ``out_dir``; returns
    the manifest (without ``spec``: the caller adds it and writes the file)."""
    scratch = out_dir / ".ingest-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        filtered = _filter(conv_files, scratch, build)
        store = _split(filtered, scratch / "samples.jsonl", build)
        merged = _merge(store, out_dir / json_name, build)
        lengths = list(store.lengths)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files = {
        "dataset_jsonl": merged.jsonl_path.name,
        "dataset_json": merged.json_path.name,
        "rejected": build.rejected.path.name,
        "manifest": MANIFEST_FILE,
    }
    return dataset_manifest(build, merged, lengths, files)


def _filter(
    conv_files: list[tuple[str, Path]], scratch: Path, build: DatasetBuild
) -> list[tuple[str, Path]]:
    filtered: list[tuple[str, Path]] = []
    progress = build.clock.stage("filter")
    for name, path in conv_files:
        report = build.reports.setdefault(name, SourceReport(name, location=str(path)))
        out = scratch / f"{name}.jsonl"
        counts = filter_conv_file(
            name, path, out, build.policy, build.map_fn, build.rejected, on_progress=progress
        )
        progress.advance(counts.received)
        report.stages["filter"] = counts
        filtered.append((name, out))
    build.clock.lap("filter")
    return filtered


def _split(
    filtered: list[tuple[str, Path]], samples_file: Path, build: DatasetBuild
) -> SampleStore:
    total = sum(build.reports[name].stages["filter"].kept for name, _ in filtered)
    store = SampleStore(samples_file)
    progress = build.clock.stage("split", total)
    progress(0)
    for name, path in filtered:
        split_counts = split_file(
            path, store, build.counter, build.max_length, progress, build.map_fn
        )
        progress.advance(split_counts.conversations.received)
        build.reports[name].split = split_counts
    store.close()
    build.clock.lap("split")
    return store


def _merge(store: SampleStore, json_path: Path, build: DatasetBuild) -> MergeResult:
    progress = build.clock.stage("merge", len(store))
    progress(0)
    merged = write_dataset(
        store, json_path.with_suffix(".jsonl"), json_path, build.seed, on_progress=progress
    )
    build.clock.lap("merge")
    return merged
