"""Token-budget splitting with the original's defects fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.ingestor.formats.records import roles_alternate
from services.ingestor.rules.splitting import TURN_ALLOWANCE, split_conversation, turn_costs
from services.ingestor.rules.tokens import TurnTokenCounter, plain_tokenizer_file
from services.ingestor.stages.split import SampleStore, split_file
from tests.ingestor.builders import conversation_record


def convo(n_turns: int, first: str = "human", rid: str = "c") -> dict:
    roles = ("human", "gpt") if first == "human" else ("gpt", "human")
    return conversation_record(rid, *(f"turn {i}" for i in range(n_turns)), roles=roles)


def spans(result) -> list[tuple[str, list[str]]]:
    return [(s["id"], [t["value"] for t in s["conversations"]]) for s in result.samples]


def test_exactly_at_budget_fits_in_one_sample() -> None:
    result = split_conversation(convo(4), [10, 10, 10, 10], max_length=40)
    assert spans(result) == [("c_0", ["turn 0", "turn 1", "turn 2", "turn 3"])]
    assert result.lengths == [40]


def test_last_pair_overflowing_is_emitted_as_its_own_sample() -> None:
    result = split_conversation(convo(6), [10, 10, 10, 10, 10, 11], max_length=40)
    assert [sid for sid, _ in spans(result)] == ["c_0", "c_4"]
    assert spans(result)[1][1] == ["turn 4", "turn 5"]
    assert result.lengths == [40, 21]


def test_oversized_round_is_dropped_and_splits_the_conversation() -> None:
    result = split_conversation(convo(6), [10, 10, 30, 30, 10, 10], max_length=40)
    assert spans(result) == [("c_0", ["turn 0", "turn 1"]), ("c_4", ["turn 4", "turn 5"])]
    assert result.oversized_rounds == 1
    assert result.reason is None


def test_oversized_first_round_gives_no_empty_sample() -> None:
    result = split_conversation(convo(4), [50, 1, 10, 10], max_length=40)
    assert spans(result) == [("c_2", ["turn 2", "turn 3"])]
    assert all(s["conversations"] for s in result.samples)


def test_single_oversized_round_drops_the_conversation() -> None:
    result = split_conversation(convo(2), [30, 11], max_length=40)
    assert result.samples == []
    assert result.reason == "all_rounds_oversized"
    assert result.oversized_rounds == 1


def test_trailing_unpaired_turn_is_dropped() -> None:
    result = split_conversation(convo(5), [1, 1, 1, 1, 1], max_length=40)
    assert result.trailing_turn_dropped
    assert spans(result) == [("c_0", ["turn 0", "turn 1", "turn 2", "turn 3"])]


def test_a_single_turn_has_no_complete_round() -> None:
    result = split_conversation(convo(1), [1], max_length=40)
    assert (result.samples, result.reason) == ([], "no_complete_round")


def test_rounds_not_starting_with_human_are_refused() -> None:
    result = split_conversation(convo(4, first="gpt"), [1, 1, 1, 1], max_length=40)
    assert (result.samples, result.reason) == ([], "invalid_roles")


def test_greedy_packing_gives_alternating_samples_with_start_index_ids() -> None:
    costs = [5, 7] * 10
    result = split_conversation(convo(20, rid="long"), costs, max_length=30)
    assert [s["id"] for s in result.samples] == ["long_0", "long_4", "long_8", "long_12", "long_16"]
    assert all(roles_alternate(s["conversations"]) for s in result.samples)
    assert all(length <= 30 for length in result.lengths)
    assert sum(len(s["conversations"]) for s in result.samples) == 20


def test_turn_cost_is_tokens_plus_allowance() -> None:
    assert turn_costs([3, 0]) == [3 + TURN_ALLOWANCE, TURN_ALLOWANCE]


@pytest.fixture(scope="module")
def counter(tiny_model_dir: Path) -> TurnTokenCounter:
    return TurnTokenCounter(tiny_model_dir)


def test_counts_real_tokens_in_batches(counter: TurnTokenCounter) -> None:
    texts = ["Hello!", "The quick brown fox jumps over the lazy dog.", ""]
    counts = counter.count(texts)
    one_by_one = [counter.count([t])[0] for t in texts]
    assert counts == one_by_one
    assert counts[1] > counts[0] > 0


def test_split_file_uses_real_token_counts_at_the_budget_edge(
    counter: TurnTokenCounter, tmp_path: Path
) -> None:
    record = conversation_record(
        "r",
        "What is the capital of France?",
        "The capital of France is Paris.",
        "And the quick brown fox?",
        "It jumps over the lazy dog.",
    )
    costs = turn_costs(counter.count([t["value"] for t in record["conversations"]]))
    filtered = tmp_path / "in.jsonl"
    filtered.write_text(json.dumps(record) + "\n")

    def run(max_length: int) -> list[dict]:
        store = SampleStore(tmp_path / f"out-{max_length}.jsonl")
        counts = split_file(filtered, store, counter, max_length)
        store.close()
        assert counts.conversations.is_balanced()
        samples = [json.loads(line) for line in store.path.read_text().splitlines()]
        assert list(store.lengths) == [
            sum(costs[int(s["id"].rsplit("_", 1)[1]) :][: len(s["conversations"])]) for s in samples
        ]
        return samples

    assert [s["id"] for s in run(sum(costs))] == ["r_0"]
    assert [s["id"] for s in run(sum(costs) - 1)] == ["r_0", "r_2"]


TOKEN_PROBES = [
    "Hello!",
    "",
    "  leading and trailing spaces  ",
    "```python\ndef f(x_1):\n    return x_1 * 2\n```\n\n1. **bold** item\n* bullet",
    "Ünïcödé — 中文 العربية 🙂 <|im_start|> <|endoftext|>",
    "tabs\tand\r\nwindows newlines\n\n\n",
]


@pytest.mark.parametrize("model", ["tiny_model_dir", "default_model_dir"])
def test_plain_tokenizer_file_counts_what_transformers_counts(
    model: str, request: pytest.FixtureRequest
) -> None:
    """tokenizers alone (no transformers, no torch) where the folder allows it: same counts."""
    folder = request.getfixturevalue(model)
    plain = TurnTokenCounter(folder)
    full = TurnTokenCounter(folder, plain=False)
    assert plain.count(TOKEN_PROBES) == full.count(TOKEN_PROBES)
    assert plain.name == full.name == str(folder)


def test_a_config_with_its_own_bos_rule_goes_through_transformers(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text('{"add_bos_token": true}')
    assert plain_tokenizer_file(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    assert plain_tokenizer_file(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "TokenizersBackend"}')
    assert plain_tokenizer_file(tmp_path) == tmp_path / "tokenizer.json"
