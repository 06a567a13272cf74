"""Loss mask: every assistant token and end-of-turn token is trained, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from services.trainer.data import prepare_data
from services.trainer.errors import TrainingError
from services.trainer.masking import IGNORE_INDEX, MaskedSample, tokenize_and_mask
from services.trainer.rendering import (
    CHAT_TEMPLATE,
    VICUNA,
    UnmaskableSample,
    render_conversation,
    template_name_for,
    training_conversation,
)
from tests.trainer.builders import conversation, turn, write_dataset

REPLIES = ["Hi there, how can I help?", "Paris is the capital of France.", " 2 + 2 = 4\n"]
QUESTIONS = ["Hello!", "What is the capital of France?", "And 2 + 2?"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def multi_turn() -> dict:
    texts = [t for pair in zip(QUESTIONS, REPLIES, strict=True) for t in pair]
    return conversation(0, *texts)


def mask(tokenizer, template_name: str, record: dict, max_length: int = 512):
    template = training_conversation(template_name, tokenizer)
    rendered = render_conversation(template, record["conversations"])
    [result] = tokenize_and_mask(tokenizer, [rendered], max_length)
    return rendered, result


def trained_runs(sample: MaskedSample) -> list[list[int]]:
    """Maximal runs of consecutive trained positions, as token ids."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        trained = label != IGNORE_INDEX
        if trained:
            assert label == token  # labels are the input ids themselves (shifted by the loss)
            if previous:
                runs[-1].append(token)
            else:
                runs.append([token])
        previous = trained
    return runs


@pytest.mark.parametrize("template_name", [VICUNA, CHAT_TEMPLATE])
def test_every_reply_and_its_end_token_trained_and_nothing_else(tokenizer, template_name) -> None:
    _, sample = mask(tokenizer, template_name, multi_turn())
    assert isinstance(sample, MaskedSample)
    eos = tokenizer.eos_token
    runs = [tokenizer.decode(run) for run in trained_runs(sample)]
    # One run per reply: the reply (plus the space the model generates after "ASSISTANT:" in
    # vicuna) and the end-of-turn token, which is the EOS for both templates here.
    assert len(runs) == len(REPLIES)
    for run, reply in zip(runs, REPLIES, strict=True):
        assert run.endswith(eos)
        assert run[: -len(eos)].strip() == reply.strip()
        assert run.count(eos) == 1
    # Masked: everything else, i.e. system prompt, user turns and role prefixes.
    masked = tokenizer.decode(
        [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label == -100]
    )
    for question in QUESTIONS:
        assert question in masked
    if template_name == VICUNA:
        assert masked.startswith("A chat between a curious user")
        assert masked.count("USER:") == 3 and masked.count("ASSISTANT:") == 3
    else:
        assert masked.count("<|im_start|>assistant") == 3 and masked.count("<|im_start|>user") == 3
    # Counts agree: trained tokens = tokens of the runs, no more.
    assert sample.num_trained == sum(len(run) for run in trained_runs(sample))
    assert sample.labels[0] == IGNORE_INDEX


def test_vicuna_text_is_what_serving_renders(tokenizer) -> None:
    rendered, _ = mask(tokenizer, VICUNA, conversation(0, "Hello!", "Hi!", "How are you?", "Fine."))
    eos = tokenizer.eos_token  # the tiny tokenizer's EOS stands in for LLaMA's </s>
    system = training_conversation(VICUNA, tokenizer).system
    assert rendered.text == (
        f"{system} USER: Hello! ASSISTANT: Hi!{eos}USER: How are you? ASSISTANT: Fine.{eos}"
    )


def test_vicuna_keeps_llama_end_of_turn_when_eos_is_slash_s(tokenizer) -> None:
    template = training_conversation(VICUNA, tokenizer)
    assert template.sep2 == tokenizer.eos_token
    tokenizer_copy = type("T", (), {"eos_token": "</s>", "eos_token_id": 2})()
    assert training_conversation(VICUNA, tokenizer_copy).sep2 == "</s>"


def test_system_turn_is_masked(tokenizer) -> None:
    record = {
        "conversations": [turn("system", "You are terse."), turn("human", "Hi"), turn("gpt", "Yo")]
    }
    for name in (VICUNA, CHAT_TEMPLATE):
        rendered, sample = mask(tokenizer, name, record)
        assert "You are terse." in rendered.text
        [reply] = trained_runs(sample)
        assert tokenizer.decode(reply).strip().startswith("Yo")
        assert sample.num_trained == len(reply)


def test_leading_reply_without_question_is_dropped(tokenizer) -> None:
    record = {"conversations": [turn("gpt", "orphan"), turn("human", "Q"), turn("gpt", "A")]}
    rendered, sample = mask(tokenizer, VICUNA, record)
    assert "orphan" not in rendered.text
    assert len(trained_runs(sample)) == 1


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([turn("human", "a"), turn("human", "b"), turn("gpt", "c")], "roles_not_alternating"),
        ([turn("human", "a"), turn("gpt", "  ")], "empty_turn"),
        ([turn("human", "a"), turn("robot", "b")], "unknown_role"),
        ([turn("human", "a")], "no_reply"),
    ],
)
def test_malformed_conversations_are_unmaskable(tokenizer, turns, reason) -> None:
    template = training_conversation(VICUNA, tokenizer)
    with pytest.raises(UnmaskableSample) as caught:
        render_conversation(template, turns)
    assert caught.value.reason == reason


def test_reply_truncated_away_is_unmaskable_but_partial_reply_is_kept(tokenizer) -> None:
    record = conversation(0, "Hi", "a long answer " * 30)
    _, whole = mask(tokenizer, VICUNA, record)
    first_trained = next(i for i, label in enumerate(whole.labels) if label != IGNORE_INDEX)
    _, cut = mask(tokenizer, VICUNA, record, max_length=first_trained)
    assert isinstance(cut, UnmaskableSample) and cut.reason == "truncated"
    _, partial = mask(tokenizer, VICUNA, record, max_length=first_trained + 5)
    assert isinstance(partial, MaskedSample)
    assert partial.num_trained == 5 and partial.labels == whole.labels[: first_trained + 5]


def test_auto_template_choice_matches_serving() -> None:
    assert template_name_for("/m/CAMEL-13B-Combined-Data", True, "auto") == VICUNA
    assert template_name_for("/m/vicuna-7b-v1.3", True, "auto") == VICUNA
    assert template_name_for("/m/SmolLM2-135M-Instruct", True, "auto") == CHAT_TEMPLATE
    assert template_name_for("/m/llama-7b", False, "auto") == VICUNA  # the original's format
    assert template_name_for("/m/SmolLM2", True, VICUNA) == VICUNA


def _records(good: int, bad: int) -> list[dict]:
    records = [conversation(i, f"Question {i}?", f"Answer {i}.") for i in range(good)]
    records += [conversation(good + i, "q", "a", "q2") | {"conversations": []} for i in range(bad)]
    return records


def test_lost_samples_are_counted_and_reported(tmp_path: Path, tokenizer) -> None:
    path = write_dataset(tmp_path / "d.json", _records(199, 1))
    warnings: list[str] = []
    data = prepare_data(
        path,
        None,
        0.0,
        0,
        training_conversation(VICUNA, tokenizer),
        tokenizer,
        128,
        lambda level, text: warnings.append(f"{level}: {text}"),
    )
    assert (data.total_samples, data.lost_samples, len(data.train)) == (200, 1, 199)
    assert data.lost == {"no_reply": 1}
    assert len(warnings) == 1 and "1 of 200 samples" in warnings[0] and "c199" in warnings[0]


def test_more_than_one_percent_lost_fails_with_counts(tmp_path: Path, tokenizer) -> None:
    path = write_dataset(tmp_path / "d.jsonl", _records(197, 3), jsonl=True)
    with pytest.raises(TrainingError, match=r"3 of 200 samples .*no_reply: 3.*more than 1%"):
        prepare_data(path, None, 0.0, 0, training_conversation(VICUNA, tokenizer), tokenizer, 128)


def test_validation_split_is_seeded(tmp_path: Path, tokenizer) -> None:
    path = write_dataset(tmp_path / "d.json", _records(100, 0))
    template = training_conversation(VICUNA, tokenizer)
    first = prepare_data(path, None, 0.1, 7, template, tokenizer, 128)
    again = prepare_data(path, None, 0.1, 7, template, tokenizer, 128)
    assert (len(first.train), len(first.eval)) == (90, 10)
    assert [s.input_ids for s in first.eval] == [s.input_ids for s in again.eval]
