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
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.trainer.errors import TrainingError
from services.trainer.lazy import LazySamples, RecordFile
from services.trainer.masking import MaskedSample, tokenize_and_mask
from services.trainer.rendering import UnmaskableSample, render_conversation

MAX_LOST_FRACTION = 0.01
_CHUNK = 1000  # conversations tokenized per call: bounds memory, keeps batching fast


@dataclass
class PreparedData:
    train: Sequence[MaskedSample]  # a list, or LazySamples (masked when read)
    eval: Sequence[MaskedSample]
    total_samples: int
    lost: Counter[str] = field(default_factory=Counter)
    lost_examples: list[str] = field(default_factory=list)
    train_lengths: Sequence[int] = ()  # token length of each training sample
    trained_tokens: int = 0  # tokens of the training samples that carry a loss

    @property
    def lost_samples(self) -> int:
        return sum(self.lost.values())

    @property
    def eval_lengths(self) -> Sequence[int]:
        return _lengths(self.eval)


def _lengths(samples: Sequence[MaskedSample]) -> Sequence[int]:
    if isinstance(samples, LazySamples):
        return samples.lengths
    return [len(s.input_ids) for s in samples]


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


def split_indices(
    n: int,
    fraction: float,
    seed: int,
    max_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> tuple[list[int], list[int]]:
    """Seeded permutation, cut to ``max_samples``, then the first ``floor((1 - fraction) * N)``
    train and at most ``max_eval_samples`` of the rest eval (as the original)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    order = order[:max_samples]
    n_train = math.floor((1 - fraction) * len(order)) if fraction > 0 else len(order)
    n_train = max(n_train, 1)
    return order[:n_train], order[n_train:][:max_eval_samples]


def split_for_eval(
    records: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded shuffle, then the first ``floor((1 - fraction) * N)`` train (as the original)."""
    train, evaluation = split_indices(len(records), fraction, seed)
    return [records[i] for i in train], [records[i] for i in evaluation]


def mask_outcomes(
    records: list[Any], template: Any, tokenizer: Any, max_length: int
) -> list[tuple[str, MaskedSample | UnmaskableSample]]:
    """``(sample id, masked sample or why not)`` for each record, tokenized in one call."""
    outcomes: list[tuple[str, MaskedSample | UnmaskableSample]] = []
    rendered, owners = [], []
    for position, record in enumerate(records):
        sample_id = str(record.get("id", "?")) if isinstance(record, dict) else "?"
        outcomes.append((sample_id, UnmaskableSample("malformed", "record is not an object")))
        try:
            if isinstance(record, dict):
                rendered.append(render_conversation(template, record.get("conversations")))
                owners.append(position)
        except UnmaskableSample as exc:
            outcomes[position] = (sample_id, exc)
    for position, result in zip(
        owners, tokenize_and_mask(tokenizer, rendered, max_length), strict=True
    ):
        outcomes[position] = (outcomes[position][0], result)
    return outcomes


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
        for sample_id, result in mask_outcomes(
            records[begin : begin + _CHUNK], template, tokenizer, max_length
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


@dataclass(frozen=True)
class DataOptions:
    """How the data is read: ``lazy`` (mask when read, see ``lazy.py``), the original's
    ``max_samples``/``max_eval_samples`` caps, and where a lazy run may put its scratch file."""

    lazy: bool = False
    max_samples: int | None = None
    max_eval_samples: int | None = None
    scratch_dir: Path | None = None


def prepare_data(
    training_file: str | Path,
    validation_file: str | Path | None,
    validation_split: float,
    seed: int,
    template: Any,
    tokenizer: Any,
    max_length: int,
    emit: Callable[[str, str], None] = lambda level, message: None,
    options: DataOptions | None = None,
) -> PreparedData:
    """Both datasets, masked (or indexed, when lazy); raises ``TrainingError`` past the
    lost-sample limit."""
    options = options or DataOptions()
    masking = (template, tokenizer, max_length)
    if options.lazy:
        data = _prepare_lazy(
            training_file, validation_file, validation_split, seed, masking, options
        )
    else:
        data = _prepare_eager(
            training_file, validation_file, validation_split, seed, masking, options
        )
    _check_lost(data, emit)
    if not data.train:
        raise TrainingError(f"dataset file {training_file} has no trainable conversations")
    return data


def _prepare_eager(
    training_file: str | Path,
    validation_file: str | Path | None,
    validation_split: float,
    seed: int,
    masking: tuple[Any, Any, int],
    options: DataOptions,
) -> PreparedData:
    records = load_conversations(training_file)
    if validation_file:
        eval_records = load_conversations(validation_file)[: options.max_eval_samples]
        train_records = records[: options.max_samples]
    else:
        train_idx, eval_idx = split_indices(
            len(records), validation_split, seed, options.max_samples, options.max_eval_samples
        )
        train_records = [records[i] for i in train_idx]
        eval_records = [records[i] for i in eval_idx]
    del records
    lost: Counter[str] = Counter()
    examples: list[str] = []
    train = mask_records(train_records, *masking, lost, examples)
    evaluation = mask_records(eval_records, *masking, lost, examples)
    return PreparedData(
        train,
        evaluation,
        len(train_records) + len(eval_records),
        lost,
        examples,
        train_lengths=_lengths(train),
        trained_tokens=sum(s.num_trained for s in train),
    )


def _measure(
    records: RecordFile, masking: tuple[Any, Any, int], wanted: set[int] | None, data: PreparedData
) -> tuple[array, array]:
    """Token length and trained tokens of every record (0 when it cannot be masked, or is not
    ``wanted``); lost ones are counted in ``data``. One streaming pass, nothing kept."""
    lengths = array("I", bytes(4 * len(records)))
    trained = array("I", bytes(4 * len(records)))
    begin = 0
    for chunk in records.records(_CHUNK):
        positions = [begin + k for k in range(len(chunk)) if wanted is None or begin + k in wanted]
        selected = [chunk[i - begin] for i in positions]
        for index, (sample_id, result) in zip(
            positions, mask_outcomes(selected, *masking), strict=True
        ):
            if isinstance(result, UnmaskableSample):
                _count(data.lost, data.lost_examples, result, sample_id)
            else:
                lengths[index] = len(result.input_ids)
                trained[index] = result.num_trained
        begin += len(chunk)
    return lengths, trained


def _lazy_sets(
    records: RecordFile,
    index_sets: list[list[int]],
    masking: tuple[Any, Any, int],
    data: PreparedData,
) -> list[tuple[LazySamples, int]]:
    """For each list of record indices, its maskable records as LazySamples and their trained
    tokens; the file is measured once (only the records some list names)."""
    wanted = {i for indices in index_sets for i in indices}
    lengths, trained = _measure(
        records, masking, wanted if len(wanted) < len(records) else None, data
    )
    encode = _encoder(*masking)
    out = []
    for indices in index_sets:
        kept = [i for i in indices if lengths[i]]
        samples = LazySamples(records, kept, [lengths[i] for i in kept], encode)
        out.append((samples, sum(trained[i] for i in kept)))
    return out


def _prepare_lazy(
    training_file: str | Path,
    validation_file: str | Path | None,
    validation_split: float,
    seed: int,
    masking: tuple[Any, Any, int],
    options: DataOptions,
) -> PreparedData:
    data = PreparedData([], [], 0)
    records = RecordFile(training_file, options.scratch_dir)
    if validation_file:
        eval_records = RecordFile(validation_file, options.scratch_dir)
        train_idx = list(range(len(records)))[: options.max_samples]
        eval_idx = list(range(len(eval_records)))[: options.max_eval_samples]
        [(train, trained)] = _lazy_sets(records, [train_idx], masking, data)
        [(evaluation, _)] = _lazy_sets(eval_records, [eval_idx], masking, data)
    else:
        train_idx, eval_idx = split_indices(
            len(records), validation_split, seed, options.max_samples, options.max_eval_samples
        )
        sets = _lazy_sets(records, [train_idx, eval_idx], masking, data)
        (train, trained), (evaluation, _) = sets
    data.train, data.eval, data.trained_tokens = train, evaluation, trained
    data.total_samples = len(train_idx) + len(eval_idx)
    data.train_lengths = train.lengths
    return data


def _encoder(template: Any, tokenizer: Any, max_length: int) -> Callable[[Any], MaskedSample]:
    def encode(record: Any) -> MaskedSample:
        ((sample_id, result),) = mask_outcomes([record], template, tokenizer, max_length)
        if isinstance(result, UnmaskableSample):
            raise TrainingError(f"sample {sample_id} changed during training: {result}")
        return result

    return encode


def _check_lost(data: PreparedData, emit: Callable[[str, str], None]) -> None:
    if not data.lost_samples:
        return
    lost, examples = data.lost, data.lost_examples
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
