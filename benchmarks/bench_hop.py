"""The controller hop: the same streaming chat clients through the controller's OpenAI API and
straight to the worker (worker protocol), in alternating pairs on one stack, so that the
machine's drift hits both alike.

``make bench-hop`` prints, per level, the median tokens/s and p95 time to first token of each
side and their ratio. Settings come from the environment as for any worker or controller (e.g.
``WORKER_GATHER_MAX_MS=0`` to compare without the gather window).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_serve_peers import measure, ours, processes  # noqa: E402
from shared.settings import default_model_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--pairs", type=int, default=5, help="alternating runs per level")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    with processes() as start:
        targets, _ = ours(start, default_model_dir(), "auto", args.levels, args.max_new_tokens)
        for n in args.levels:  # warm-up: the first batch of a size pays one-time costs
            for target in targets:
                asyncio.run(measure(target.client, n))
        print("| clients | side | tokens/s | p95 TTFT | p95 TTFT of each run |")
        print("| --- | --- | --- | --- | --- |")
        for n in args.levels:
            runs: dict[str, list[dict]] = {t.name: [] for t in targets}
            for _ in range(args.pairs):
                for target in targets:
                    runs[target.name].append(asyncio.run(measure(target.client, n)))
            p95 = {}
            for name, results in runs.items():
                tokens = statistics.median(r["tokens_per_s"] for r in results)
                p95[name] = statistics.median(r["ttft_p95"] for r in results)
                each = ", ".join(f"{r['ttft_p95']:.3f}" for r in results)
                print(f"| {n} | {name} | {tokens:.1f} | {p95[name]:.3f} s | {each} |", flush=True)
            via, straight = (p95[t.name] for t in targets)
            print(f"| {n} | via / straight | | {via / straight:.2f}x | |", flush=True)


if __name__ == "__main__":
    main()
