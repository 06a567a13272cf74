"""Generation on a tiny random LLaMA: sampling controls, stops, usage, truncation."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from services.model_worker.generation import generate_stream
from services.model_worker.loader import LoadedModel
from shared.schemas import GenerateParams

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def run(tiny: LoadedModel, **kwargs: Any) -> list[dict[str, Any]]:
    context_len = kwargs.pop("context_len", tiny.context_len)
    interval = kwargs.pop("stream_interval", 2)
    params = GenerateParams(**{"prompt": PROMPT, "temperature": 0.0, "echo": False, **kwargs})
    return list(
        generate_stream(
            tiny.model, tiny.tokenizer, params, context_len=context_len, stream_interval=interval
        )
    )


def test_greedy_is_deterministic_and_usage_is_exact(tiny: LoadedModel) -> None:
    first, second = run(tiny, max_new_tokens=12), run(tiny, max_new_tokens=12)
    assert first[-1]["text"] == second[-1]["text"] != ""
    final = first[-1]
    assert final["finish_reason"] == "length"
    prompt_tokens = len(tiny.tokenizer(PROMPT).input_ids)
    assert final["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 12,
        "total_tokens": prompt_tokens + 12,
    }
    assert all(c["finish_reason"] is None for c in first[:-1])
    assert all(c["error_code"] == 0 for c in first)


def test_snapshots_are_cumulative_and_follow_the_stream_interval(tiny: LoadedModel) -> None:
    chunks = run(tiny, max_new_tokens=12, stream_interval=4)
    texts = [c["text"] for c in chunks]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert len(chunks) <= 12 // 4 + 1


def test_stop_string_cuts_at_its_first_occurrence(tiny: LoadedModel) -> None:
    full = run(tiny, max_new_tokens=24)[-1]["text"]
    stop = full[5:8]
    expected = full[: full.find(stop)]
    chunks = run(tiny, max_new_tokens=24, stop=[stop, "never-there"])
    assert chunks[-1]["text"] == expected
    assert chunks[-1]["finish_reason"] == "stop"
    assert all(stop not in c["text"] for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] < 24


def test_stop_token_ids_end_generation(tiny: LoadedModel) -> None:
    vocab = tiny.model.config.vocab_size
    final = run(tiny, max_new_tokens=10, stop_token_ids=list(range(vocab)))[-1]
    assert final["finish_reason"] == "stop"
    assert final["usage"]["completion_tokens"] == 1


def test_a_stop_on_the_last_step_reports_stop_not_length(tiny: LoadedModel) -> None:
    vocab = tiny.model.config.vocab_size
    final = run(tiny, max_new_tokens=1, stop_token_ids=list(range(vocab)))[-1]
    assert final["finish_reason"] == "stop"


def test_echo_returns_prompt_then_reply(tiny: LoadedModel) -> None:
    reply = run(tiny, max_new_tokens=6)[-1]["text"]
    echoed = run(tiny, max_new_tokens=6, echo=True)[-1]["text"]
    assert echoed == PROMPT + reply


def test_left_truncation_keeps_the_latest_tokens_and_counts_them(tiny: LoadedModel) -> None:
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 20
    assert len(tiny.tokenizer(long_prompt).input_ids) > 40
    final = run(tiny, prompt=long_prompt, max_new_tokens=8, context_len=40)[-1]
    assert final["usage"]["prompt_tokens"] == 32
    assert final["usage"]["completion_tokens"] == 8


def test_seeded_sampling_is_reproducible(tiny: LoadedModel) -> None:
    a = run(tiny, max_new_tokens=16, temperature=1.0, seed=7)[-1]["text"]
    b = run(tiny, max_new_tokens=16, temperature=1.0, seed=7)[-1]["text"]
    c = run(tiny, max_new_tokens=16, temperature=1.0, seed=8)[-1]["text"]
    assert a == b
    assert a != c


def test_sampling_controls_are_accepted(tiny: LoadedModel) -> None:
    controls = {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.3}
    final = run(tiny, max_new_tokens=8, seed=1, **controls)[-1]
    assert final["usage"]["completion_tokens"] == 8


def test_top_k_one_equals_greedy(tiny: LoadedModel) -> None:
    greedy = run(tiny, max_new_tokens=10)[-1]["text"]
    assert run(tiny, max_new_tokens=10, temperature=1.0, top_k=1, seed=3)[-1]["text"] == greedy


def test_cancel_stops_before_the_next_token(tiny: LoadedModel) -> None:
    cancel = threading.Event()
    cancel.set()
    params = GenerateParams(prompt=PROMPT, max_new_tokens=10)
    stream = generate_stream(
        tiny.model, tiny.tokenizer, params, context_len=tiny.context_len, cancel=cancel
    )
    assert list(stream) == []
