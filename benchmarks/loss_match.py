"""Packed rows against the original's padded batches: does packing change what is learnt?

``python benchmarks/loss_match.py [--conversations 110] [--max-length 1024]``

Both runs go through ``run_training`` on the same generated CAMEL-like conversations (see
bench_train.py), seed, LoRA and held-out split (10%), one epoch at a constant learning rate.
Packed rows hold about k samples each, so the padded run (one sample per row, padded to
max_length, as the original) accumulates k samples per optimizer step to take about as many
steps over the same data. Printed: optimizer steps, mean training loss over the epoch and the
held-out loss at the end of each run, and their differences.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from bench_train import _sample_lengths, camel_like, lora_request  # noqa: E402

from services.trainer.job import TrainingOptions, run_training  # noqa: E402
from shared.settings import default_model_dir  # noqa: E402
from shared.training import FineTuneRequest  # noqa: E402


def run(request: FineTuneRequest, padding: str, workdir: Path) -> dict:
    losses: list[float] = []

    def on_event(event: dict) -> None:
        data = event.get("data", {})
        if event["type"] == "metrics" and "loss" in data and "eval_loss" not in data:
            losses.append(data["loss"])

    options = TrainingOptions(
        padding=padding,
        save_total_limit=1,
        attention="sdpa" if padding == "max_length" else None,
        chunked_loss=padding != "max_length",
    )
    result = run_training(request, workdir / padding, on_event=on_event, options=options)
    metrics = result["metrics"]
    return {
        "steps": result["steps"],
        "mean_train_loss": statistics.mean(losses),
        "eval_loss": metrics["eval_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=110)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="loss-match-") as tmp:
        workdir = Path(tmp)
        data = workdir / "camel_like.json"
        data.write_text(json.dumps(camel_like(rng, args.conversations, args.max_length)))

        def request(accumulation: int) -> FineTuneRequest:
            return lora_request(
                str(default_model_dir()),
                data,
                0.1,
                n_epochs=1,
                gradient_accumulation_steps=accumulation,
                max_length=args.max_length,
            )

        lengths = _sample_lengths(request(1))
        per_row = max(1, round(args.max_length * 0.97 / statistics.mean(lengths)))
        packed = run(request(1), "pack", workdir)
        padded = run(request(per_row), "max_length", workdir)
    print(
        f"{len(lengths)} conversations, mean {statistics.mean(lengths):.0f} tokens; padded "
        f"run accumulates {per_row} samples per step"
    )
    print(f"{'batching':<34}{'steps':>6}{'mean train loss':>17}{'held-out loss':>15}")
    for name, row in (("packed rows (ours)", packed), ("padded, accumulated (original)", padded)):
        print(
            f"{name:<34}{row['steps']:>6}{row['mean_train_loss']:>17.4f}{row['eval_loss']:>15.4f}"
        )
    diff = packed["eval_loss"] / padded["eval_loss"] - 1
    print(f"held-out loss, packed vs padded: {diff:+.2%}")


if __name__ == "__main__":
    main()
