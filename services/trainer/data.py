"""Conversation files in, masked token sequences out, with every dropped sample accounted for.

Input is the common conversation format the ingestor writes: a JSON list, or JSON lines, of
``{"id", "conversations": [{"from": "human" | "gpt", "value"}]}``. Samples that cannot be masked
are counted by reason and reported; more than ``MAX_LOST_FRACTION`` of them fails the job,
because a silently shrinking dataset (the original's "tokenization mismatch ... (ignored)") is
worse than a clear error.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.trainer.errors import TrainingError
from services.trainer.masking import MaskedSample, tokenize_and_mask
from services.trainer.rendering import UnmaskableSample, render_conversation

MAX_LOST_FRACTION = 0.01
_CHUNK = 1000  # conversations tokenized per call: bounds memory, keeps batching fast


@dataclass
class PreparedData:
    train: list[MaskedSample]
    eval: list[MaskedSample]
    total_samples: int
    lost: Counter[str] = field(default_factory=Counter)
    lost_examples: list[str] = field(default_factory=list)

    @property
    def lost_samples(self) -> int:
        return sum(self.lost.values())


def load_conversations(path: str | Path) -> list[dict[str, Any]]:
    """Records from a ``.json`` list or a ``.jsonl`` file; ``TrainingError`` if unusable."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read dataset file {path}: {exc}") from exc
    try:
        stripped = raw.lstrip()
        if stripped.startswith("["):
            records = json.loads(raw)
        else:
            records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise TrainingError(f"dataset file {path} is not JSON or JSON lines: {exc}") from exc
    if not isinstance(records, list) or not records:
        raise TrainingError(f"dataset file {path} holds no conversations")
    return records


def split_for_eval(
    records: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded shuffle, then the first ``floor((1 - fraction) * N)`` train (as the original)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_train = math.floor((1 - fraction) * len(records)) if fraction > 0 else len(records)
    n_train = max(n_train, 1)
    return [records[i] for i in order[:n_train]], [records[i] for i in order[n_train:]]


def mask_records(
    records: list[dict[str, Any]],
    template: Any,
    tokenizer: Any,
    max_length: int,
    lost: Counter[str],
    lost_examples: list[str],
) -> list[MaskedSample]:
    """Render, tokenize and mask records; unmaskable ones go to ``lost`` by reason."""
    kept: list[MaskedSample] = []
    for begin in range(0, len(records), _CHUNK):
        chunk = records[begin : begin + _CHUNK]
        rendered, owners = [], []
        for record in chunk:
            sample_id = str(record.get("id", "?")) if isinstance(record, dict) else "?"
            try:
                if not isinstance(record, dict):
                    raise UnmaskableSample("malformed", "record is not an object")
                rendered.append(render_conversation(template, record.get("conversations")))
                owners.append(sample_id)
            except UnmaskableSample as exc:
                _count(lost, lost_examples, exc, sample_id)
        for sample_id, result in zip(
            owners, tokenize_and_mask(tokenizer, rendered, max_length), strict=True
        ):
            if isinstance(result, UnmaskableSample):
                _count(lost, lost_examples, result, sample_id)
            else:
                kept.append(result)
    return kept


def _count(lost: Counter[str], examples: list[str], exc: UnmaskableSample, sample_id: str) -> None:
    lost[exc.reason] += 1
    if len(examples) < 5:
        examples.append(f"{sample_id} ({exc})")


def prepare_data(
    training_file: str | Path,
    validation_file: str | Path | None,
    validation_split: float,
    seed: int,
    template: Any,
    tokenizer: Any,
    max_length: int,
    emit: Callable[[str, str], None] = lambda level, message: None,
) -> PreparedData:
    """Both datasets, masked; raises ``TrainingError`` past the lost-sample limit."""
    records = load_conversations(training_file)
    if validation_file:
        train_records, eval_records = records, load_conversations(validation_file)
    else:
        train_records, eval_records = split_for_eval(records, validation_split, seed)
    lost: Counter[str] = Counter()
    examples: list[str] = []
    train = mask_records(train_records, template, tokenizer, max_length, lost, examples)
    evaluation = mask_records(eval_records, template, tokenizer, max_length, lost, examples)
    data = PreparedData(train, evaluation, len(train_records) + len(eval_records), lost, examples)
    if data.lost_samples:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in lost.most_common())
        message = (
            f"{data.lost_samples} of {data.total_samples} samples cannot be masked and are "
            f"skipped ({reasons}); e.g. {'; '.join(examples)}"
        )
        if data.lost_samples > MAX_LOST_FRACTION * data.total_samples:
            hint = (
                "raise max_length or split long conversations"
                if lost.most_common(1)[0][0] == "truncated"
                else "check the dataset's format (alternating human/gpt turns) and the template"
            )
            raise TrainingError(
                f"{message}. That is more than {MAX_LOST_FRACTION:.0%} of the dataset: {hint}."
            )
        emit("warn", message)
    if not train:
        raise TrainingError(f"dataset file {training_file} has no trainable conversations")
    return data
