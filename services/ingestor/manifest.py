"""``manifest.json``: what a build read, kept and dropped (per stage, per source, per reason, with
in = kept + dropped everywhere), the token-length statistics and every setting that shaped it."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.ingestor.rules.splitting import TURN_ALLOWANCE
from services.ingestor.sources import Source
from services.ingestor.stages.counts import StageCounts
from services.ingestor.stages.merge import MergeResult, length_stats
from services.ingestor.stages.split import SplitCounts

if TYPE_CHECKING:
    from services.ingestor.pipeline import DatasetBuild

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
SPLIT_RULE = (
    f"turn cost = tokens (tokenizer's own special tokens included) + {TURN_ALLOWANCE}; rounds "
    "packed greedily while the sample cost <= max_length; a trailing unpaired turn is dropped; a "
    "round over max_length on its own is dropped (oversized_round) and splits the conversation; "
    "sample id = <id>_<index of its first turn>"
)


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


def stage_totals(reports: dict[str, SourceReport], merged: StageCounts) -> dict[str, Any]:
    """Every stage's counts summed over the sources (merge counts samples of all of them)."""
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
    stages["merge"] = merged.as_dict()
    return stages


def dataset_manifest(
    build: DatasetBuild, merged: MergeResult, lengths: list[int], files: dict[str, str]
) -> dict[str, Any]:
    reports = build.reports
    stages = stage_totals(reports, merged.counts)
    by_reason: Counter[str] = Counter()
    for counts in stages.values():
        by_reason.update(counts["dropped"])
    policy = build.policy
    return {
        "version": MANIFEST_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": merged.counts.kept,
        "sha256": merged.sha256,
        "seed": build.seed,
        "tokenizer": build.counter.name,
        "max_length": build.max_length,
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
        "rejected": build.rejected.count,
        "files": files,
        "seconds": build.clock.seconds,
    }


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    path = out_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info(
        "event=ingest_done dir=%s records=%d sha256=%s rejected=%d",
        out_dir,
        manifest["records"],
        manifest["sha256"],
        manifest["rejected"],
    )
    return path
