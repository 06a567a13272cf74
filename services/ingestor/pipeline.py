"""The whole ingestion, as one plain function: download -> convert -> filter -> split -> merge.

``run_pipeline`` is what the REST API and the Celery task call, and what ``python -m
services.ingestor run`` runs. ``build_dataset`` is its second half (filter, split, merge over
``*_conv.json`` files), shared with the ``merge`` command.

Work folder layout: ``sources/`` (URL downloads, extracted archives of local sources),
``converted/<name>_conv.json``, then ``dataset.jsonl``, ``dataset.json``, ``manifest.json`` and
``rejected.jsonl``. Hub downloads live in the shared download folder (see ``run_pipeline``).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.ingestor.convert_stage import convert_source
from services.ingestor.counts import StageCounts
from services.ingestor.download_stage import fetch_source
from services.ingestor.filter_stage import filter_conv_file
from services.ingestor.language import LanguagePolicy
from services.ingestor.merge_stage import length_stats, write_dataset
from services.ingestor.parallel import OrderedMap, ordered_map
from services.ingestor.quarantine import RejectedLog
from services.ingestor.sources import SOURCE_KEYS, Source, resolve_sources
from services.ingestor.split import TURN_ALLOWANCE
from services.ingestor.split_stage import SampleStore, SplitCounts, split_file
from services.ingestor.tokens import TurnTokenCounter
from shared.settings import ingestor_settings

__all__ = [
    "SOURCE_KEYS",
    "IngestError",
    "IngestSpec",
    "build_dataset",
    "load_tokenizer",
    "run_pipeline",
    "write_manifest",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]

MANIFEST_VERSION = 1
SPLIT_RULE = (
    f"turn cost = tokens (tokenizer's own special tokens included) + {TURN_ALLOWANCE}; rounds "
    "packed greedily while the sample cost <= max_length; a trailing unpaired turn is dropped; a "
    "round over max_length on its own is dropped (oversized_round) and splits the conversation; "
    "sample id = <id>_<index of its first turn>"
)


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


@dataclass
class SourceReport:
    """Everything the manifest says about one source."""

    name: str
    kind: str = "conv_file"
    location: str = ""
    formats: Counter[str] = field(default_factory=Counter)
    stages: dict[str, StageCounts] = field(default_factory=dict)
    split: SplitCounts | None = None
    unsafe_archive_members: int = 0

    @classmethod
    def of(cls, source: Source) -> SourceReport:
        return cls(source.name, source.kind, source.location)

    def as_dict(self) -> dict[str, Any]:
        stages = {stage: counts.as_dict() for stage, counts in self.stages.items()}
        if self.split is not None:
            stages["split"] = self.split.as_dict()
            samples = self.split.samples
            stages["merge"] = {"in": samples, "kept": samples, "dropped": {}}
        out: dict[str, Any] = {"kind": self.kind, "location": self.location}
        if self.formats:
            out["formats"] = dict(self.formats)
        if self.unsafe_archive_members:
            out["unsafe_archive_members"] = self.unsafe_archive_members
        out["stages"] = stages
        out["samples"] = self.split.samples if self.split else 0
        return out


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
    clock = StageClock(progress)
    reports = {s.name: SourceReport.of(s) for s in sources}
    settings = ingestor_settings()
    hub_dir = Path(download_dir or settings.download_dir)
    log.info("event=ingest_start work_dir=%s sources=%s", work_dir, [s.name for s in sources])

    with (
        RejectedLog(work_dir / "rejected.jsonl") as rejected,
        ordered_map(spec.workers) as map_fn,
    ):
        fetched = []
        clock.notify("download", 0, len(sources))
        for done, source in enumerate(sources, 1):
            folder = hub_dir if source.kind == "hub" else work_dir / "sources"
            item = fetch_source(source, folder, rejected, settings.http_timeout)
            reports[source.name].stages["download"] = item.counts
            reports[source.name].unsafe_archive_members = item.unsafe_members
            fetched.append(item)
            clock.notify("download", done, len(sources))
        clock.lap("download")
        if not any(item.roots for item in fetched):
            failed = ", ".join(s.name for s in sources)
            raise IngestError(f"no source could be downloaded or read: {failed}")

        conv_files: list[tuple[str, Path]] = []
        converted_so_far = 0
        for item in fetched:
            name = item.source.name
            base = converted_so_far
            result = convert_source(
                name,
                item.roots,
                work_dir / "converted",
                forced_format=item.source.format,
                seed=spec.seed,
                map_fn=map_fn,
                rejected=rejected,
                on_progress=lambda done, base=base: clock.notify("convert", base + done, None),
            )
            converted_so_far += result.counts.received
            reports[name].stages["convert"] = result.counts
            reports[name].formats = result.formats
            conv_files.append((name, result.path))
        clock.lap("convert")

        manifest = build_dataset(
            conv_files,
            work_dir,
            counter=counter,
            max_length=spec.max_length,
            policy=spec.policy,
            seed=spec.seed,
            map_fn=map_fn,
            rejected=rejected,
            reports=reports,
            clock=clock,
        )
    manifest["spec"] = asdict(spec)
    write_manifest(work_dir, manifest)
    return manifest


def build_dataset(
    conv_files: list[tuple[str, Path]],
    out_dir: Path,
    *,
    counter: TurnTokenCounter,
    max_length: int,
    policy: LanguagePolicy,
    seed: int,
    map_fn: OrderedMap,
    rejected: RejectedLog,
    reports: dict[str, SourceReport] | None = None,
    clock: StageClock | None = None,
    json_name: str = "dataset.json",
) -> dict:
    """filter → split → merge of ``(source name, conv file)`` pairs into ``out_dir``."""
    reports = reports if reports is not None else {}
    clock = clock or StageClock(None)
    scratch = out_dir / ".ingest-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        filtered: list[tuple[str, Path]] = []
        total_in = 0
        for name, path in conv_files:
            report = reports.setdefault(name, SourceReport(name, location=str(path)))
            out = scratch / f"{name}.jsonl"
            base = total_in
            counts = filter_conv_file(
                name,
                path,
                out,
                policy=policy,
                map_fn=map_fn,
                rejected=rejected,
                on_progress=lambda done, base=base: clock.notify("filter", base + done, None),
            )
            total_in += counts.received
            report.stages["filter"] = counts
            filtered.append((name, out))
        clock.lap("filter")

        total = sum(reports[name].stages["filter"].kept for name, _ in filtered)
        store = SampleStore(scratch / "samples.jsonl")
        done_before = 0
        clock.notify("split", 0, total)
        for name, path in filtered:
            base = done_before
            split_counts = split_file(
                path,
                store,
                counter,
                max_length,
                on_progress=lambda done, base=base: clock.notify("split", base + done, total),
            )
            done_before += split_counts.conversations.received
            reports[name].split = split_counts
        store.close()
        clock.lap("split")

        json_path = out_dir / json_name
        jsonl_path = json_path.with_suffix(".jsonl")
        clock.notify("merge", 0, len(store))
        merged = write_dataset(
            store,
            jsonl_path,
            json_path,
            seed,
            on_progress=lambda done: clock.notify("merge", done, len(store)),
        )
        clock.lap("merge")
        lengths = list(store.lengths)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    return _manifest(
        reports,
        merged_counts=merged.counts,
        lengths=lengths,
        counter=counter,
        max_length=max_length,
        policy=policy,
        seed=seed,
        sha256=merged.sha256,
        files={
            "dataset_jsonl": jsonl_path.name,
            "dataset_json": merged.json_path.name,
            "rejected": rejected.path.name,
            "manifest": "manifest.json",
        },
        rejected=rejected,
        seconds=clock.seconds,
    )


def _manifest(
    reports: dict[str, SourceReport],
    *,
    merged_counts: StageCounts,
    lengths: list[int],
    counter: TurnTokenCounter,
    max_length: int,
    policy: LanguagePolicy,
    seed: int,
    sha256: str,
    files: dict[str, str],
    rejected: RejectedLog,
    seconds: dict[str, float],
) -> dict:
    stages: dict[str, Any] = {}
    for stage in ("download", "convert", "filter"):
        present = [r.stages[stage] for r in reports.values() if stage in r.stages]
        if present:
            total = StageCounts()
            for counts in present:
                total.add(counts)
            stages[stage] = total.as_dict()
    split_total = SplitCounts()
    for report in reports.values():
        if report.split:
            split_total.add(report.split)
    stages["split"] = split_total.as_dict()
    stages["merge"] = merged_counts.as_dict()

    by_reason: Counter[str] = Counter()
    for counts in stages.values():
        by_reason.update(counts["dropped"])

    return {
        "version": MANIFEST_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": merged_counts.kept,
        "sha256": sha256,
        "seed": seed,
        "tokenizer": counter.name,
        "max_length": max_length,
        "split_rule": SPLIT_RULE,
        "language": {
            "detector": "py3langid",
            "keep_lang": policy.keep_lang,
            "skip_lang": policy.skip_lang,
            "reduce_rep": policy.reduce_rep,
            "applies_to": "all sources" if policy.needs_detection else "none",
        },
        "token_lengths": length_stats(lengths),
        "sources": {name: report.as_dict() for name, report in reports.items()},
        "stages": stages,
        "dropped_by_reason": dict(sorted((k, v) for k, v in by_reason.items() if v)),
        "rejected": rejected.count,
        "files": files,
        "seconds": seconds,
    }


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info(
        "event=ingest_done dir=%s records=%d sha256=%s rejected=%d",
        out_dir,
        manifest["records"],
        manifest["sha256"],
        manifest["rejected"],
    )
    return path


def default_tokenizer_path() -> str:
    from shared.settings import default_model_dir

    return ingestor_settings().tokenizer_path or str(default_model_dir())
