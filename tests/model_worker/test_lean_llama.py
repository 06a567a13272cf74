"""The fast decode path computes what transformers computes: logits, greedy text, every row."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from services.model_worker.engine import ModelEngine
from services.model_worker.lean_llama import LeanLlama, RowCache, prepacks, supports
from services.model_worker.loader import LoadedModel
from services.model_worker.prefix_cache import MIN_SHARED_TOKENS
from services.model_worker.template_choice import conversation_for
from shared.schemas import GenerateParams

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "def add(a, b):\n    return a + b\n",
    "x",
]


def reference_logits(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def tiny_qwen2(**overrides: Any) -> Any:
    """Qwen2: biases on q/k/v, tied embeddings, no sliding window (unless overridden)."""
    torch.manual_seed(0)
    config = Qwen2Config(
        **{
            "vocab_size": 256,
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "max_position_embeddings": 128,
            "tie_word_embeddings": True,
            "use_sliding_window": False,
            **overrides,
        }
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # random init leaves the biases at zero; make them count
        for layer in model.model.layers:
            layer.self_attn.q_proj.bias.normal_()
            layer.self_attn.k_proj.bias.normal_()
    return model


@pytest.fixture(params=["llama", "qwen2"])
def model(request: Any, tiny: LoadedModel) -> Any:
    return tiny.model if request.param == "llama" else tiny_qwen2()


def test_prefill_chunks_and_decode_steps_match_transformers(model: Any) -> None:
    """Right-padded group prefill, a prompt prefilled in chunks, and decode steps of rows at
    different lengths: every row's logits equal transformers' for the same tokens."""
    lean = LeanLlama(model)
    prompts = [list(range(5, 42)), list(range(60, 80)), [7]]
    cache: RowCache = lean.new_cache()
    longest = max(map(len, prompts))
    ids = torch.tensor([p + [0] * (longest - len(p)) for p in prompts])
    keep = torch.tensor([len(p) - 1 for p in prompts])
    with torch.inference_mode():
        logits = lean.forward(ids, cache, slice(0, 3), torch.zeros(3, dtype=torch.long), keep)
    for i, prompt in enumerate(prompts):
        torch.testing.assert_close(logits[i], reference_logits(model, prompt), atol=1e-4, rtol=0)
    chunked = lean.new_cache()
    with torch.inference_mode():
        for start in range(0, len(prompts[0]), 8):
            piece = torch.tensor([prompts[0][start : start + 8]])
            last = lean.forward(piece, chunked, slice(0, 1), torch.tensor([start]))
    torch.testing.assert_close(last[0], reference_logits(model, prompts[0]), atol=1e-4, rtol=0)
    history = [list(p) for p in prompts]
    for step in range(4):
        nxt = [100 + step + i for i in range(3)]
        starts = torch.tensor([len(h) for h in history])
        with torch.inference_mode():
            out = lean.forward(torch.tensor(nxt)[:, None], cache, slice(0, 3), starts)
        for i, h in enumerate(history):
            h.append(nxt[i])
            torch.testing.assert_close(out[i], reference_logits(model, h), atol=1e-4, rtol=0)


def test_fused_weights_share_the_models_storage(tiny: LoadedModel) -> None:
    """Fusing q/k/v and gate/up does not copy the model: its parameters become views (of the
    weight that products use where nothing is prepacked)."""
    model = tiny.model
    before = sum(p.numel() for p in model.parameters())
    with patch("services.model_worker.lean_llama.prepacks", return_value=False):
        lean = LeanLlama(model)
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.weight.data_ptr() == lean.layers[0].qkv.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == before


def test_which_models_take_the_fast_path(tiny: LoadedModel) -> None:
    assert supports(tiny.model)
    assert supports(tiny_qwen2())
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert not supports(gpt2)
    assert not supports(tiny_qwen2(use_sliding_window=True, sliding_window=16))


def make_engine(
    tiny: LoadedModel, tiny_model_dir: Path, fast_path: bool = True, **kwargs: Any
) -> ModelEngine:
    conv = conversation_for(str(tiny_model_dir), tiny.tokenizer)
    return ModelEngine(
        dataclasses.replace(tiny),
        ["tiny"],
        conv,
        max_batch_size=8,
        stream_interval=1,
        fast_path=fast_path,
        **kwargs,
    )


async def test_greedy_text_equals_transformers_generate(
    tiny: LoadedModel, tiny_model_dir: Path
) -> None:
    """The fast path's greedy answers, alone and in a crowded batch whose rows leave at
    different steps, equal transformers' own ``generate`` and the transformers decode path."""
    fast, general = (make_engine(tiny, tiny_model_dir, flag) for flag in (True, False))
    assert fast.details()["decode_path"] == "lean_llama"
    assert general.details()["decode_path"] == "transformers"
    try:
        expected = []
        for prompt in PROMPTS:
            ids = tiny.tokenizer(prompt, return_tensors="pt").input_ids
            with torch.inference_mode():
                out = tiny.model.generate(ids, max_new_tokens=20, do_sample=False)
            expected.append(tiny.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))

        def request(prompt: str, n: int = 20) -> GenerateParams:
            return GenerateParams(prompt=prompt, max_new_tokens=n, temperature=0, echo=False)

        for engine in (fast, general):
            crowd = [engine.generate(request(p, 5 + 7 * i)) for i, p in enumerate(PROMPTS)]
            results = await asyncio.gather(*(engine.generate(request(p)) for p in PROMPTS), *crowd)
            assert [r["text"] for r in results[: len(PROMPTS)]] == expected
    finally:
        fast.shutdown()
        general.shutdown()


async def test_prefix_cache_and_shared_prompts_keep_the_answers(
    tiny: LoadedModel, tiny_model_dir: Path
) -> None:
    """A group of chats sharing a system message computes the shared part once, identical
    prompts once, and a later prompt reuses cached prefixes; every greedy answer is the one
    computed without any of that."""
    system = "<|im_start|>system\\nYou are a helpful assistant who answers briefly.<|im_end|>\\n"
    questions = ["What is the capital of France?", "Name a colour.", "Count to three."]
    chats = [
        f"{system}<|im_start|>user\\n{q}<|im_end|>\\n<|im_start|>assistant\\n"
        for q in [*questions, questions[0]]
    ]
    plain = make_engine(tiny, tiny_model_dir, fast_path=False)
    cached = make_engine(tiny, tiny_model_dir, prefix_cache_mb=16)
    rows = cached._scheduler._batch
    try:

        def request(prompt: str) -> GenerateParams:
            return GenerateParams(prompt=prompt, max_new_tokens=12, temperature=0, echo=False)

        expected = [(await plain.generate(request(c)))["text"] for c in chats]
        together = await asyncio.gather(*(cached.generate(request(c)) for c in chats))
        assert [r["text"] for r in together] == expected
        # Every distinct chat after the first found the system part (at least) in the cache.
        # (The repeated chat either does too, or shares its twin's row when both are prefilled
        # in one pass; which happens depends on how the submissions fall into passes.)
        distinct = len(set(chats))
        assert rows.prefixes.hits >= distinct - 1
        assert rows.prefixes.hit_tokens >= (distinct - 1) * MIN_SHARED_TOKENS
        hits = rows.prefixes.hit_tokens
        again = await cached.generate(request(chats[1]))
        assert again["text"] == expected[1]
        # A repeated prompt runs only its last token.
        assert rows.prefixes.hit_tokens - hits == len(tiny.tokenizer(chats[1]).input_ids) - 1
    finally:
        plain.shutdown()
        cached.shutdown()


PACKING_PROMPTS = torch.tensor([list(range(3, 40)), list(range(50, 87))])


def packed_and_plain_logits(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of PACKING_PROMPTS through the lean path with prepacked weights and without."""
    packed = LeanLlama(model)
    assert packed.packed
    with patch("services.model_worker.lean_llama.prepacks", return_value=False):
        plain = LeanLlama(model)
    assert not plain.packed
    starts = torch.zeros(2, dtype=torch.long)
    with torch.inference_mode():
        a = packed.forward(PACKING_PROMPTS, packed.new_cache(), slice(0, 2), starts)
        b = plain.forward(PACKING_PROMPTS, plain.new_cache(), slice(0, 2), starts)
    return a, b


@pytest.mark.skipif(
    not prepacks(torch.bfloat16, "cpu"), reason="no oneDNN bf16 linear on this CPU build"
)
def test_bf16_prepacked_weights_give_the_unpacked_logits(tiny_model_dir: Path) -> None:
    """bf16 on a CPU hands oneDNN prepacked weights: bit-identical to torch's own products,
    and close to transformers' bf16 forward (whose attention kernel rounds differently)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).eval()
    a, b = packed_and_plain_logits(model)
    assert torch.equal(a, b)
    reference = reference_logits(model, PACKING_PROMPTS[0].tolist())
    assert (a[0] - reference).abs().max() < 0.05 * reference.abs().max()


@pytest.mark.skipif(not prepacks(torch.float32, "cpu"), reason="no oneDNN on this CPU build")
def test_fp32_prepacked_weights_give_the_unpacked_logits(tiny: LoadedModel) -> None:
    """float32 on a CPU hands oneDNN prepacked weights too: its sums differ from torch's own
    products only in the last bits, and greedy choices are the same."""
    a, b = packed_and_plain_logits(tiny.model)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_bf16_is_not_prepacked_where_onednn_cannot_run_it() -> None:
    """Packing a bf16 weight raises on a CPU without AVX-512 or AVX-NE-CONVERT: there the
    worker keeps torch's own products instead of failing to start."""
    with patch.object(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", return_value=False):
        assert not prepacks(torch.bfloat16, "cpu")
    assert not prepacks(torch.float16, "cpu")


async def test_requests_over_the_cache_budget_wait_and_still_answer(
    tiny: LoadedModel, tiny_model_dir: Path
) -> None:
    """Under a key/value budget smaller than the first row's allocation (8 rows of 256
    positions of 512 bytes: 1 MiB), the first request still runs alone, the second waits for it
    instead of growing the cache past the budget, and both answers are their greedy ones."""
    engine = make_engine(tiny, tiny_model_dir, kv_cache_mb=1)
    rows = engine._scheduler._batch
    rows.budget_bytes = 600_000  # below one allocation (the setting counts whole MiB)
    long_prompts = ["The quick brown fox jumps over the lazy dog. " * 22, "0123456789 " * 40]

    def request(prompt: str) -> GenerateParams:
        return GenerateParams(prompt=prompt, max_new_tokens=20, temperature=0, echo=False)

    try:
        alone = [(await engine.generate(request(p)))["text"] for p in long_prompts]
        widest = 0

        async def watch() -> None:
            nonlocal widest
            while True:
                widest = max(widest, len(rows))
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        together = await asyncio.gather(*(engine.generate(request(p)) for p in long_prompts))
        watcher.cancel()
        assert [r["text"] for r in together] == alone
        assert widest == 1  # never both at once
        assert not rows.fits([tiny.tokenizer(long_prompts[0]).input_ids]) or not len(rows)
    finally:
        engine.shutdown()
