"""Training throughput: our trainer (packing) against the original's pad-to-max-length batches.

``python benchmarks/bench_train.py [--steps 8] [--max-length 2048] [--precision auto]``

Both runs go through ``services.trainer.job.run_training`` with the same request: the default
SmolLM2-135M-Instruct, LoRA (r=8, all linear layers), the same generated CAMEL-like conversations
(most 100-600 tokens, a tail up to max_length), the same loss mask, batch size 1, a fixed number
of optimizer steps. Only the batching differs: packed rows of up to max_length tokens with
per-sample attention, or one sample per row padded to max_length (the original). The figure is
real (non-padding) tokens per second over the steps after the first (warm-up). A padded step
costs the same whatever it holds, so the baseline's epoch figure is the mean sample length over
its seconds per step; the speed-up is reported against that (and against the few samples drawn).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from services.trainer.job import TrainingOptions, run_training  # noqa: E402
from shared.settings import default_model_dir  # noqa: E402
from shared.training import FineTuneRequest  # noqa: E402

_WORDS_TEXT = (
    "the of and to in is that for it as was with be by on not this are or from at which but have "
    "an they you were her she there one all we their can has been if more when will would who so "
    "program function value list data result example method class return loop variable problem "
    "cell energy reaction molecule force velocity acid protein equation theorem proof market "
    "society teacher student history culture language policy design system network model"
)
WORDS = _WORDS_TEXT.split()
TOKENS_PER_WORD = 1.0  # SmolLM2's tokenizer on this vocabulary, measured


def words(rng: random.Random, tokens: int) -> str:
    n = max(3, int(tokens / TOKENS_PER_WORD))
    out = rng.choices(WORDS, k=n)
    for i in range(0, n, 12):
        out[i] = out[i].capitalize()
    return " ".join(out) + "."


def camel_like(rng: random.Random, count: int, max_length: int) -> list[dict]:
    """Conversations whose lengths follow a CAMEL-like mix: mostly short, a long tail."""
    records = []
    for i in range(count):
        short = rng.random() < 0.85
        target = rng.randint(100, 600) if short else rng.randint(600, max_length - 64)
        rounds = rng.choice([1, 1, 2, 3])
        per_round = max(40, target // rounds - 20)
        turns = []
        for _ in range(rounds):
            question = rng.randint(10, max(11, per_round // 4))
            turns.append({"from": "human", "value": words(rng, question)})
            turns.append({"from": "gpt", "value": words(rng, max(10, per_round - question))})
        records.append({"id": f"bench-{i}", "conversations": turns})
    return records


def lora_request(
    model: str, data_path: Path, validation_split: float, **hyperparameters: int
) -> FineTuneRequest:
    """LoRA on ``data_path`` at batch 1, seed 0, a constant learning rate and no intermediate
    checkpoints; ``hyperparameters`` add the length and the steps or epochs."""
    return FineTuneRequest(
        model=model,
        training_file=str(data_path),
        validation_split=validation_split,
        method="lora",
        seed=0,
        hyperparameters={
            "batch_size": 1,
            "save_steps": 10_000,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
            **hyperparameters,
        },
    )


def measure(
    request: FineTuneRequest, padding: str, precision: str, workdir: Path
) -> dict[str, float]:
    """Run the trainer; tokens/s between the first and the last step."""
    marks: list[tuple[float, int, int]] = []  # (time, step, real tokens so far)

    def on_event(event: dict) -> None:
        if event["type"] == "metrics" and "eval_loss" not in event["data"]:
            data = event["data"]
            marks.append((time.monotonic(), data["step"], data["trained_tokens"]))
        elif event["type"] == "message":
            print(f"  [{padding}] {event['message']}", flush=True)

    started = time.monotonic()
    result = run_training(
        request,
        workdir / padding,
        on_event=on_event,
        # The baseline as the original ran it: one sample per row under transformers' SDPA, the
        # model's own loss over every position's logits.
        options=TrainingOptions(
            precision=precision,
            padding=padding,
            save_total_limit=1,
            attention="sdpa" if padding == "max_length" else None,
            chunked_loss=padding != "max_length",
        ),
    )
    (t0, s0, n0), (t1, s1, n1) = marks[0], marks[-1]
    return {
        "steps": result["steps"],
        "seconds": time.monotonic() - started,
        "tokens_per_s": (n1 - n0) / (t1 - t0),
        "seconds_per_step": (t1 - t0) / (s1 - s0),
        "tokens_per_step": (n1 - n0) / (s1 - s0),
    }


def peak_rss_gib() -> float:
    """This process's peak resident set so far (training runs in-process)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(default_model_dir()))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16")
    args = parser.parse_args()

    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        workdir = Path(tmp)
        data_path = workdir / "camel_like.json"
        data_path.write_text(json.dumps(camel_like(rng, args.conversations, args.max_length)))
        request = lora_request(
            args.model, data_path, 0.0, max_steps=args.steps, max_length=args.max_length
        )
        lengths = _sample_lengths(request)
        print(
            f"model {args.model}; {len(lengths)} conversations, tokens per sample: mean "
            f"{statistics.mean(lengths):.0f}, median {statistics.median(lengths):.0f}, "
            f"max {max(lengths)}; {sum(n <= 600 for n in lengths) / len(lengths):.0%} <= 600",
            flush=True,
        )
        figures = {}
        for padding in ("pack", "max_length"):
            print(f"{padding}: {args.steps} LoRA steps at batch 1 x {args.max_length}", flush=True)
            figures[padding] = measure(request, padding, args.precision, workdir)
            # Packed runs first, so the peak after it is its own (the padded one's comes after).
            figures[padding]["peak_rss_gib"] = peak_rss_gib()
            print(f"  {json.dumps({k: round(v, 2) for k, v in figures[padding].items()})}")

    packed, padded = figures["pack"], figures["max_length"]
    speedup = packed["tokens_per_s"] / padded["tokens_per_s"]
    # A padded step costs the same whatever sample it holds, so over a whole epoch the baseline
    # reaches (mean sample length / seconds per step); the few steps measured draw few samples.
    padded_long_run = statistics.mean(lengths) / padded["seconds_per_step"]
    print()
    print(
        f"peak RSS: packed run {packed['peak_rss_gib']:.2f} GiB (target <= 5); with the padded "
        f"run after it {padded['peak_rss_gib']:.2f} GiB"
    )
    print(f"{'batching':<28}{'real tokens/s':>15}{'s/step':>9}{'real tokens/step':>18}")
    for name, key in (("packed rows (ours)", "pack"), ("pad to max_length (orig.)", "max_length")):
        row = figures[key]
        print(
            f"{name:<28}{row['tokens_per_s']:>15.1f}{row['seconds_per_step']:>9.2f}"
            f"{row['tokens_per_step']:>18.0f}"
        )
    print(
        f"{'pad to max_length, epoch':<28}{padded_long_run:>15.1f}"
        f"{padded['seconds_per_step']:>9.2f}{statistics.mean(lengths):>18.0f}"
    )
    long_run = packed["tokens_per_s"] / padded_long_run
    print(
        f"speed-up: {long_run:.2f}x over an epoch of this data ({speedup:.2f}x on the "
        f"{args.steps - 1} padded samples measured); target >= 5x"
    )


def _sample_lengths(request: FineTuneRequest) -> list[int]:
    from services.trainer.data import load_conversations, mask_records
    from services.trainer.model_setup import load_tokenizer
    from services.trainer.rendering import template_name_for, training_conversation

    tokenizer = load_tokenizer(request.model)
    name = template_name_for(request.model, bool(tokenizer.chat_template), request.template)
    samples = mask_records(
        load_conversations(request.training_file),
        training_conversation(name, tokenizer),
        tokenizer,
        request.hyperparameters.max_length,
        lost=Counter(),
        lost_examples=[],
    )
    return [len(s.input_ids) for s in samples]


if __name__ == "__main__":
    main()
