"""Peak memory of training-data preparation, eager against lazy tokenization (``lazy_preprocess``).

``python benchmarks/bench_prepare.py [--sizes 100000 388000] [--modes eager lazy]
[--eager-max 100000] [--rss-limit-gb 10]``

A synthetic CAMEL-scale dataset in the ingestor's ``dataset.jsonl`` layout is written once per
size (streamed, never held): the released mixture's shares (229k CAMEL chats, 107k ShareGPT,
52k Alpaca of 388k) with their length mix after the ingestor's split at 2048 tokens (median near
580, p95 near 1950, none over 2048). Each (mode, size) then runs in a fresh process: load the
SmolLM2-135M-Instruct tokenizer, ``prepare_data`` (98/2 split, render, tokenize, mask) and pack
the rows, exactly what ``run_training`` does before the model is loaded. The figure is that
process's peak RSS (``ru_maxrss``), and the RSS once the tokenizer is loaded (the floor).
Eager runs above ``--eager-max`` conversations are skipped (a 388k eager run needs more memory
than a shared machine should give it); a child above ``--rss-limit-gb`` stops and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_train import words  # noqa: E402

MIX = (("camel", 229), ("sharegpt", 107), ("alpaca", 52))  # thousands, the released mixture


def target_tokens(rng: random.Random, kind: str) -> tuple[int, int]:
    """(total tokens, rounds) for one conversation of a kind, after the 2048-token split."""
    if kind == "alpaca":
        return rng.randint(40, 400), 1
    if kind == "camel":
        return int(min(2000, rng.lognormvariate(6.3, 0.45))), rng.randint(2, 8)
    if rng.random() < 0.3:  # ShareGPT: long conversations split into near-budget samples
        return rng.randint(1700, 2000), rng.randint(2, 6)
    return int(min(2000, rng.lognormvariate(6.2, 0.8))), rng.randint(1, 5)


def write_dataset(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    kinds = [kind for kind, share in MIX for _ in range(share)]
    with path.open("w") as f:
        for i in range(count):
            total, rounds = target_tokens(rng, rng.choice(kinds))
            per_round = max(20, total // rounds - 12)
            turns = []
            for _ in range(rounds):
                question = rng.randint(8, max(9, per_round // 4))
                turns.append({"from": "human", "value": words(rng, question)})
                turns.append({"from": "gpt", "value": words(rng, max(8, per_round - question))})
            f.write(json.dumps({"id": f"bench-{i}", "conversations": turns}) + "\n")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def watch_rss(limit_gb: float) -> None:
    def watch() -> None:
        while True:
            if rss_mib() > limit_gb * 1024:
                print(json.dumps({"error": f"over {limit_gb} GB RSS, stopped"}), flush=True)
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def child(mode: str, data: Path, limit_gb: float) -> None:
    """One measurement, printed as a JSON line."""
    watch_rss(limit_gb)
    from services.trainer.data import DataOptions, prepare_data
    from services.trainer.model_setup import load_tokenizer
    from services.trainer.packing import PackedRows
    from services.trainer.rendering import template_name_for, training_conversation
    from shared.settings import default_model_dir

    model = str(default_model_dir())
    tokenizer = load_tokenizer(model)
    template = training_conversation(template_name_for(model, True, "auto"), tokenizer)
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        options = DataOptions(lazy=mode == "lazy", scratch_dir=Path(scratch))
        prepared = prepare_data(data, None, 0.02, 0, template, tokenizer, 2048, options=options)
        rows = PackedRows(prepared.train, 2048, prepared.train_lengths)
        elapsed = time.monotonic() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tokens = sum(prepared.train_lengths)
        print(
            json.dumps(
                {
                    "floor_mib": round(floor),
                    "peak_mib": round(peak),
                    "seconds": round(elapsed, 1),
                    "train": len(prepared.train),
                    "tokens": tokens,
                    "rows": len(rows),
                    "lost": prepared.lost_samples,
                }
            ),
            flush=True,
        )


def run_child(mode: str, data: Path, limit_gb: float) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--data",
            str(data),
            "--rss-limit-gb",
            str(limit_gb),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-500:]}"}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 388_000])
    parser.add_argument("--modes", nargs="+", choices=["eager", "lazy"], default=["eager", "lazy"])
    parser.add_argument("--eager-max", type=int, default=100_000)
    parser.add_argument("--rss-limit-gb", type=float, default=10.0)
    parser.add_argument("--child", choices=["eager", "lazy"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.rss_limit_gb)
        return
    print("| conversations | mode | peak RSS MiB | RSS after tokenizer load MiB | s | tokens |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            data = Path(folder) / f"camel-{size}.jsonl"
            write_dataset(data, size)
            for mode in args.modes:
                if mode == "eager" and size > args.eager_max:
                    print(f"| {size:,} | eager | skipped (over --eager-max) | | | |", flush=True)
                    continue
                r = run_child(mode, data, args.rss_limit_gb)
                if "error" in r:
                    print(f"| {size:,} | {mode} | {r['error']} | | | |", flush=True)
                    continue
                print(
                    f"| {size:,} | {mode} | {r['peak_mib']:,} | {r['floor_mib']:,} "
                    f"| {r['seconds']} | {r['tokens']:,} |",
                    flush=True,
                )
            data.unlink()


if __name__ == "__main__":
    main()
