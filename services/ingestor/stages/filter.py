"""Stage "filter": re-check each converted record's structure (conv files may come from
elsewhere), then apply the language and repetition policy. Kept records go to a JSON Lines file
for the splitter; the unit counted is one conversation.

Only the language detection runs in the worker processes, on a short text sample: shipping
whole records to them would cost more than the checks done here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.files.readers import RawUnit, read_units
from services.ingestor.files.writers import scratch_line
from services.ingestor.formats.records import derived_uuid4, normalized, structure_problem
from services.ingestor.rules.language import (
    LanguagePolicy,
    conversation_sample,
    detect_language,
    has_repeated_digits,
    language_reason,
)
from services.ingestor.stages.counts import StageCounts, Tally
from services.ingestor.stages.parallel import OrderedMap

STAGE = "filter"


class Candidate(NamedTuple):
    record: Any
    file: str
    reason: str | None = None  # set when the record is already refused
    detail: str | None = None
    sample: str | None = None  # text for the language detector
    fallback_id: str = ""


def detect_sample(sample: str | None) -> str | None:
    return None if sample is None else detect_language(sample)


def _candidates(units: Iterator[RawUnit], name: str, policy: LanguagePolicy) -> Iterator[Candidate]:
    for index, unit in enumerate(units):
        fallback_id = derived_uuid4(0, name, index)
        if unit.error:
            yield Candidate(None, unit.file, unit.error, unit.detail)
            continue
        problem = structure_problem(unit.record)
        if problem:
            yield Candidate(unit.record, unit.file, problem)
        elif policy.needs_detection:
            sample = conversation_sample(unit.record)
            yield Candidate(unit.record, unit.file, sample=sample, fallback_id=fallback_id)
        else:
            yield Candidate(unit.record, unit.file, fallback_id=fallback_id)


def filter_units(
    units: Iterator[RawUnit],
    name: str,
    policy: LanguagePolicy,
    map_fn: OrderedMap,
    tally: Tally,
) -> Iterator[dict[str, Any]]:
    """The kept conversations of a stream of raw units, normalized, in input order; every unit
    is counted in ``tally``. Shared by the pipeline and ``python -m
    services.ingestor.optional_clean``. ``name`` seeds the ids of records without one."""
    to_detect, candidates = itertools.tee(_candidates(units, name, policy))
    if not policy.needs_detection:  # nothing for the pool to do: shipping None costs time
        map_fn = map
    codes = map_fn(detect_sample, (c.sample for c in to_detect))
    for candidate, code in zip(candidates, codes, strict=True):
        reason = candidate.reason
        if reason is None and code is not None:
            reason = language_reason(code, policy)
        if reason is None and policy.reduce_rep and has_repeated_digits(candidate.record):
            reason = "repeated_digits"
        if reason is None:
            tally.keep()
            yield normalized(candidate.record, candidate.fallback_id)
        else:
            tally.drop(reason, candidate.record, candidate.file, candidate.detail)


def filter_conv_file(
    name: str,
    conv_file: Path,
    out_file: Path,
    policy: LanguagePolicy,
    map_fn: OrderedMap,
    rejected: RejectedLog,
    on_progress: Callable[[int], None] | None = None,
) -> StageCounts:
    """Filter one ``*_conv.json``/``.jsonl`` into ``out_file`` (JSON Lines)."""
    tally = Tally(STAGE, name, rejected, on_progress)
    with out_file.open("wb") as out:
        for record in filter_units(read_units(conv_file), conv_file.name, policy, map_fn, tally):
            out.write(scratch_line(record))
    return tally.finish()
