"""Stage "convert": every data file of a source, read as a stream, converted record by record in
worker processes, written to ``<name>_conv.json`` (the original's per-dataset file).

The unit counted here is a raw record, or a whole file where the file cannot be read or its
format is not recognised. ShareGPT de-duplication happens here, in input order, like the
original cleaner.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services.ingestor.files.data_files import iter_data_files
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.files.readers import RawUnit, peek, read_units
from services.ingestor.files.writers import JsonListWriter
from services.ingestor.formats.converters import ConvertTask, convert_task
from services.ingestor.formats.detect import SAMPLE_RECORDS, detect_format
from services.ingestor.formats.records import derived_uuid4
from services.ingestor.formats.sharegpt import ShareGPTDeduplicator
from services.ingestor.stages.counts import StageCounts, Tally
from services.ingestor.stages.parallel import OrderedMap

log = logging.getLogger(__name__)
STAGE = "convert"


@dataclass
class ConvertedSource:
    name: str
    path: Path
    counts: StageCounts = field(default_factory=StageCounts)
    formats: Counter[str] = field(default_factory=Counter)  # data files per detected format


def conv_file_name(name: str) -> str:
    return f"{name}_conv.json"


def _file_units(path: Path, forced: str | None, formats: Counter[str]) -> Iterator[ConvertTask]:
    units: Iterator[RawUnit] = read_units(path)
    fmt = forced
    if fmt is None:
        head, units = peek(units, SAMPLE_RECORDS)
        fmt = detect_format([u.record for u in head if u.error is None])
        if fmt is None and any(u.error is None for u in head):
            formats["unknown"] += 1
            detail = "no supported format recognised in the first records"
            yield ConvertTask(None, str(path), "", error="unknown_format", detail=detail)
            return
    formats[fmt or "unreadable"] += 1
    for unit in units:
        yield ConvertTask(fmt, unit.file, "", unit.record, unit.error, unit.detail)


def _tasks(
    name: str, roots: list[Path], forced: str | None, seed: int, formats: Counter[str]
) -> Iterator[ConvertTask]:
    index = 0
    for root in roots:
        for path in iter_data_files(root):
            for task in _file_units(path, forced, formats):
                yield task._replace(record_id=derived_uuid4(seed, name, index))
                index += 1


def convert_source(
    name: str,
    roots: list[Path],
    out_dir: Path,
    *,
    forced_format: str | None,
    seed: int,
    map_fn: OrderedMap,
    rejected: RejectedLog,
    on_progress: Callable[[int], None] | None = None,
) -> ConvertedSource:
    """Convert one source's roots into ``out_dir/<name>_conv.json``."""
    result = ConvertedSource(name, out_dir / conv_file_name(name))
    tally = Tally(STAGE, name, rejected, on_progress)
    dedup = ShareGPTDeduplicator()
    log.info("event=convert_start source=%s roots=%s", name, [str(r) for r in roots])
    with JsonListWriter(result.path) as writer:
        tasks = _tasks(name, roots, forced_format, seed, result.formats)
        for outcome in map_fn(convert_task, tasks):
            reason = outcome.reason
            if reason is None and outcome.dedup_keys is not None:
                reason = dedup.duplicate_reason(outcome.dedup_keys)
            if reason is None:
                writer.write_item(outcome.item_json)
                tally.keep()
            else:
                tally.drop(reason, outcome.rejected_input, outcome.file, outcome.detail)
    result.counts = counts = tally.finish()
    log.info(
        "event=converted source=%s read=%d kept=%d dropped=%s",
        name,
        counts.received,
        counts.kept,
        dict(counts.dropped),
    )
    return result
