"""GPU check: what this stack does on whatever NVIDIA GPU it finds, against the goals.

``python benchmarks/gpu_check.py [--dry-run] [--json FILE]`` (``make gpu-check``)

Measures, in one process, under 8 minutes on a recent GPU:

1. decode tokens/s of the native engine (``services.model_worker.engine.ModelEngine``, the
   worker's batching engine) for one stream and for 64 concurrent streams, with the default
   model (SmolLM2-135M-Instruct) and a randomly initialised 1.1B LLaMA (TinyLlama's shape);
2. training MFU of a full finetune step of that 1.1B model on packed rows (samples of mixed
   lengths packed to 2048 tokens, ``position_ids`` restarting per sample, the trainer's
   ``PackedCollator``), bf16 autocast, fused AdamW; model FLOPs per token = 6 x parameters
   + the causal attention of each sample, over the GPU's dense bf16 peak;
3. QLoRA peak memory of a 7B-shaped LLaMA (LLaMA-2-7B's shape, random weights, NF4 via
   bitsandbytes, LoRA r=16 on every linear layer, one step at 2048 tokens with gradient
   checkpointing): measured with 2 and 4 layers and scaled linearly to all 32.

Goals: >=150 tok/s single stream, >=5,000 tok/s at 64 streams, >=45% MFU. ``--dry-run`` runs
the same code on the CPU with tiny shapes (a test runs it); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from shared.settings import default_model_dir  # noqa: E402

GOALS = {"single_stream_tok_s": 150.0, "streams64_tok_s": 5000.0, "mfu": 0.45}
# Dense bf16 tensor-core peak (no sparsity), TFLOP/s, by a substring of the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A10G": 125.0,
    "A10": 125.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}


@dataclass(frozen=True)
class Sizes:
    """Shapes and lengths: the real ones, or the dry run's tiny ones."""

    llama: dict[str, int]
    llama7b: dict[str, int]
    qlora_layers: tuple[int, int]
    new_tokens: int
    streams: int
    seq_len: int
    rows: int
    train_steps: int
    lora_r: int


REAL = Sizes(
    llama={"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
           "num_attention_heads": 32, "num_key_value_heads": 4},
    llama7b={"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32},
    qlora_layers=(2, 4),
    new_tokens=128,
    streams=64,
    seq_len=2048,
    rows=4,
    train_steps=6,
    lora_r=16,
)  # fmt: skip
DRY = Sizes(
    llama={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2},
    llama7b={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 8,
             "num_attention_heads": 4, "num_key_value_heads": 4},
    qlora_layers=(1, 2),
    new_tokens=4,
    streams=4,
    seq_len=128,
    rows=2,
    train_steps=2,
    lora_r=4,
)  # fmt: skip


def llama_config(shape: dict[str, int], vocab_size: int, layers: int | None = None) -> Any:
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        **shape,
    )
    if layers is not None:
        config.num_hidden_layers = layers
    config._attn_implementation = "sdpa"
    return config


def random_llama(shape: dict[str, int], vocab_size: int, device: str, dtype: torch.dtype) -> Any:
    """Random weights, created on the device (no host copy of 1.1B parameters)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(llama_config(shape, vocab_size)).to(dtype)
    return model.eval()


# -- 1. decode -------------------------------------------------------------------------------


def engine_for(model: Any, tokenizer: Any, device: str, dtype: str, streams: int) -> Any:
    from services.model_worker.engine import ModelEngine
    from services.model_worker.loader import LoadedModel
    from shared.conversation import get_conv_template

    loaded = LoadedModel(model, tokenizer, device, dtype, 4096)
    template = get_conv_template("one_shot")
    return ModelEngine(loaded, ["check"], template, max_batch_size=streams, max_queue=4 * streams)


async def _decode_run(engine: Any, prompts: list[str], new_tokens: int) -> tuple[int, float]:
    from shared.schemas import GenerateParams

    async def one(prompt: str) -> int:
        params = GenerateParams(
            prompt=prompt, temperature=0.0, max_new_tokens=new_tokens, echo=False
        )
        result = await engine.generate(params)
        return int(result.get("usage", {}).get("completion_tokens", 0))

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(p) for p in prompts))
    return sum(counts), time.perf_counter() - started


def decode_rates(engine: Any, sizes: Sizes) -> dict[str, float]:
    """Tokens/s for one stream and for ``sizes.streams`` streams released together."""
    prompts = [f"Write a short story about a camel number {i}." for i in range(sizes.streams)]
    asyncio.run(_decode_run(engine, prompts[:2], 4))  # warm-up: kernels, allocator
    tokens1, seconds1 = asyncio.run(_decode_run(engine, prompts[:1], sizes.new_tokens))
    tokens_n, seconds_n = asyncio.run(_decode_run(engine, prompts, sizes.new_tokens))
    return {
        "single_stream_tok_s": tokens1 / seconds1,
        "streams64_tok_s": tokens_n / seconds_n,
        "single_tokens": tokens1,
        "streams_tokens": tokens_n,
    }


def check_decode(name: str, model: Any, tokenizer: Any, env: Env, sizes: Sizes) -> dict:
    engine = engine_for(model, tokenizer, env.device, str(env.dtype), sizes.streams)
    try:
        rates = decode_rates(engine, sizes)
    finally:
        engine.shutdown()
    print(
        f"decode {name}: 1 stream {rates['single_stream_tok_s']:.1f} tok/s, "
        f"{sizes.streams} streams {rates['streams64_tok_s']:.1f} tok/s"
    )
    return rates


# -- 2. training MFU -------------------------------------------------------------------------


def packed_batch(sizes: Sizes, vocab_size: int, device: str) -> tuple[dict, list[int]]:
    """``sizes.rows`` rows of ``seq_len`` tokens, each packed from CAMEL-like samples."""
    from services.trainer.packing import PackedCollator

    rng = random.Random(0)
    rows, lengths = [], []
    for _ in range(sizes.rows):
        left, ids, positions = sizes.seq_len, [], []
        while left > 0:
            n = min(left, rng.randint(sizes.seq_len // 16, sizes.seq_len // 3))
            ids += [rng.randrange(vocab_size) for _ in range(n)]
            positions += list(range(n))
            lengths.append(n)
            left -= n
        rows.append({"input_ids": ids, "labels": ids, "position_ids": positions})
    batch = PackedCollator(pad_token_id=0)(rows)
    batch.pop("real_tokens")
    return {k: v.to(device) for k, v in batch.items()}, lengths


def model_flops(params: int, config: Any, lengths: list[int]) -> float:
    """6N per token plus causal attention (QK^T and AV, forward and backward) per sample."""
    dense = 6.0 * params * sum(lengths)
    width = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    attention = sum(6.0 * config.num_hidden_layers * width * n * n for n in lengths)
    return dense + attention


def peak_flops(env: Env, override: float | None) -> float:
    if override:
        return override * 1e12
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in env.name:
            return tflops * 1e12
    return float("nan")


def check_training(env: Env, sizes: Sizes, vocab_size: int, peak_tflops: float | None) -> dict:
    """Full finetune (all weights fp32 master, bf16 autocast), packed rows, fused AdamW."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(env.device):
        model = LlamaForCausalLM(llama_config(sizes.llama, vocab_size))
    model.train()
    params = sum(p.numel() for p in model.parameters())
    fused = env.device == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
    batch, lengths = packed_batch(sizes, vocab_size, env.device)
    timings = []
    for _ in range(sizes.train_steps):
        env.sync()
        started = time.perf_counter()
        with torch.autocast(env.device, dtype=env.dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        env.sync()
        timings.append(time.perf_counter() - started)
    step = sorted(timings[1:])[len(timings[1:]) // 2]  # median after the warm-up step
    flops = model_flops(params, model.config, lengths)
    mfu = flops / step / peak_flops(env, peak_tflops)
    tokens = sum(lengths)
    print(
        f"train 1.1B-shaped full finetune ({params / 1e9:.2f}B params, {tokens} packed tokens "
        f"in {len(lengths)} samples): {step * 1000:.0f} ms/step, {tokens / step:.0f} tok/s, "
        f"MFU {mfu:.1%}"
    )
    del model, optimizer
    env.empty_cache()
    return {"mfu": mfu, "step_seconds": step, "tokens_per_s": tokens / step, "params": params}


# -- 3. QLoRA memory -------------------------------------------------------------------------


def qlora_peak(env: Env, sizes: Sizes, vocab_size: int, layers: int) -> int:
    """Peak bytes of one QLoRA step of the 7B shape cut to ``layers`` layers."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    config = llama_config(sizes.llama7b, vocab_size, layers)
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=env.dtype,
    )
    env.empty_cache()
    env.reset_peak()
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(env.dtype)
    model = _quantize(model, quant, env)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    lora = LoraConfig(r=sizes.lora_r, lora_alpha=2 * sizes.lora_r, target_modules="all-linear")
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch, _ = packed_batch(sizes._replace_rows(1), vocab_size, env.device)
    with torch.autocast(env.device, dtype=env.dtype):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    env.sync()
    peak = env.peak_bytes()
    del model, optimizer, loss
    env.empty_cache()
    return peak


def _quantize(model: Any, quant: Any, env: Env) -> Any:
    """Swap every decoder Linear for bitsandbytes' NF4 Linear4bit, on the device."""
    import bitsandbytes as bnb

    layers = model.model.layers
    for layer in layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    q = bnb.nn.Linear4bit(
                        child.in_features,
                        child.out_features,
                        bias=child.bias is not None,
                        compute_dtype=quant.bnb_4bit_compute_dtype,
                        compress_statistics=True,
                        quant_type="nf4",
                    )
                    q.weight = bnb.nn.Params4bit(
                        child.weight.data.float().cpu(), requires_grad=False, quant_type="nf4"
                    )
                    setattr(parent, name, q)
    model.is_loaded_in_4bit = True
    model.config.quantization_config = quant
    return model.to(env.device)


def check_qlora(env: Env, sizes: Sizes, vocab_size: int) -> dict:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("qlora 7B-shaped: skipped (bitsandbytes is not installed here)")
        return {"qlora_skipped": "bitsandbytes missing"}
    small, large = sizes.qlora_layers
    peak_small = qlora_peak(env, sizes, vocab_size, small)
    peak_large = qlora_peak(env, sizes, vocab_size, large)
    per_layer = (peak_large - peak_small) / (large - small)
    full = sizes.llama7b["num_hidden_layers"]
    scaled = peak_small + per_layer * (full - small)
    print(
        f"qlora 7B-shaped: peak {peak_small / 2**30:.2f} GiB at {small} layers, "
        f"{peak_large / 2**30:.2f} GiB at {large}; scaled to {full} layers: "
        f"{scaled / 2**30:.2f} GiB ({env.memory_kind})"
    )
    return {"qlora_peak_gib_scaled": scaled / 2**30, "qlora_per_layer_gib": per_layer / 2**30}


# -- the device ------------------------------------------------------------------------------


class Env:
    """The device and how to time and measure memory on it."""

    def __init__(self, dry_run: bool) -> None:
        if not dry_run and not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU is visible; use --dry-run to test the script on CPU")
        self.device = "cpu" if dry_run else "cuda"
        self.dtype = torch.bfloat16
        self.name = "CPU (dry run)" if dry_run else torch.cuda.get_device_name(0)
        self.memory_kind = "process RSS, CPU" if dry_run else "torch.cuda.max_memory_allocated"

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def empty_cache(self) -> None:
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> int:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated()
        import psutil

        return psutil.Process().memory_info().rss


def _replace_rows(self: Sizes, rows: int) -> Sizes:
    from dataclasses import replace

    return replace(self, rows=rows)


Sizes._replace_rows = _replace_rows  # type: ignore[attr-defined]


def run_checks(dry_run: bool, model_dir: str, peak_tflops: float | None) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sizes = DRY if dry_run else REAL
    env = Env(dry_run)
    print(f"device: {env.name}; torch {torch.__version__}; dry_run={dry_run}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    vocab = len(tokenizer)
    results: dict[str, Any] = {"device": env.name, "dry_run": dry_run}
    if dry_run:  # the default model's tokenizer on a tiny random model
        smol = random_llama(sizes.llama, vocab, env.device, env.dtype)
    else:
        smol = AutoModelForCausalLM.from_pretrained(model_dir, dtype=env.dtype).to(env.device)
    results["decode_smollm2"] = check_decode("SmolLM2-135M", smol.eval(), tokenizer, env, sizes)
    del smol
    big = random_llama(sizes.llama, vocab, env.device, env.dtype)
    results["decode_llama_1b"] = check_decode("LLaMA 1.1B (random)", big, tokenizer, env, sizes)
    del big
    env.empty_cache()
    results["train"] = check_training(env, sizes, vocab, peak_tflops)
    results["qlora"] = check_qlora(env, sizes, vocab)
    return results


def report(results: dict[str, Any]) -> list[str]:
    """Goal vs measured lines; the decode goals apply to the 1.1B model and to SmolLM2."""
    lines = [f"{'check':<44}{'goal':>12}{'measured':>12}  verdict"]

    def line(name: str, goal: float, value: float, unit: str = "") -> None:
        ok = "ok" if value >= goal else "BELOW"
        if isinstance(value, float) and math.isnan(value):
            ok = "unknown peak"
        lines.append(f"{name:<44}{goal:>11.4g}{unit}{value:>11.4g}{unit}  {ok}")

    for key, label in (("decode_smollm2", "SmolLM2-135M"), ("decode_llama_1b", "LLaMA 1.1B")):
        rates = results[key]
        line(f"{label} single-stream tok/s", GOALS["single_stream_tok_s"],
             rates["single_stream_tok_s"])  # fmt: skip
        line(f"{label} 64-stream tok/s", GOALS["streams64_tok_s"], rates["streams64_tok_s"])
    line("1.1B full finetune MFU (packed)", GOALS["mfu"] * 100, results["train"]["mfu"] * 100, "%")
    qlora = results["qlora"]
    if "qlora_peak_gib_scaled" in qlora:
        lines.append(
            f"{'7B QLoRA peak memory (scaled), GiB':<44}{'-':>12}"
            f"{qlora['qlora_peak_gib_scaled']:>12.2f}  measured"
        )
    else:
        lines.append(f"{'7B QLoRA peak memory':<44}{'-':>12}{'-':>12}  {qlora['qlora_skipped']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--model", default=str(default_model_dir()), help="the default model")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, TFLOP/s")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = run_checks(args.dry_run, args.model, args.peak_tflops)
    results["seconds"] = time.monotonic() - started
    print("\n".join(report(results)))
    print(f"gpu-check took {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
