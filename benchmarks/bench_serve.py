"""Serving benchmark: our continuous-batching worker against a one-request-at-a-time baseline.

``make bench-serve`` (or ``python benchmarks/bench_serve.py [--levels 1 4 16 64]``)

Both are the same worker process on the same model (the default SmolLM2) and machine; the
baseline is started with ``--engine sequential --limit-model-concurrency 1``, which decodes each
request alone as the original worker does. For each concurrency level, that many clients each
stream one request at the same moment; we report aggregate generated tokens/s and the p50/p95
time to first token (first non-empty snapshot). Figures are ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.conversation import Conversation  # noqa: E402
from shared.settings import default_model_dir  # noqa: E402
from shared.worker_protocol import aiter_chunks  # noqa: E402

QUESTIONS = [
    "Write a short story about a dragon who learns to paint.",
    "Explain how a refrigerator works.",
    "Give me three tips for learning a new language.",
    "What are the main causes of the French Revolution?",
    "Describe the water cycle to a ten year old.",
    "Write a poem about the sea.",
    "How do vaccines train the immune system?",
    "List some good habits for writing clean code.",
]


def start_worker(port: int, extra: list[str]) -> subprocess.Popen:
    # A worker of its own on loopback, without credentials (not the worker token `make up`
    # wrote into .env, which its clients here do not send).
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CAMEL_ENV_FILE": "",
        "ALLOW_UNAUTHENTICATED": "true",
    }
    cmd = [
        sys.executable,
        "-m",
        "services.model_worker",
        "--port",
        str(port),
        "--no-register",
        "--model-path",
        str(default_model_dir()),
        "--log-level",
        "WARNING",
        *extra,
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("worker did not start")


def prompts(url: str, n: int) -> list[str]:
    template = httpx.post(f"{url}/worker_get_conv_template").json()["conv"]
    out = []
    for i in range(n):
        conv = Conversation.from_dict(template)
        conv.append_message(conv.roles[0], QUESTIONS[i % len(QUESTIONS)])
        conv.append_message(conv.roles[1], None)
        out.append(conv.get_prompt())
    return out


async def one_client(
    client: httpx.AsyncClient, url: str, prompt: str, max_new_tokens: int
) -> tuple[float, int]:
    body = {
        "prompt": prompt,
        "max_new_tokens": max_new_tokens,
        "temperature": 0,
        "echo": False,
    }
    started = time.monotonic()
    ttft = float("nan")
    tokens = 0
    async with client.stream("POST", f"{url}/worker_generate_stream", json=body) as response:
        response.raise_for_status()
        async for chunk in aiter_chunks(response.aiter_bytes()):
            if chunk.get("text") and ttft != ttft:
                ttft = time.monotonic() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return ttft, tokens


async def level(url: str, clients: int, max_new_tokens: int) -> dict:
    texts = prompts(url, clients)
    async with httpx.AsyncClient(timeout=None) as client:
        started = time.monotonic()
        results = await asyncio.gather(*(one_client(client, url, p, max_new_tokens) for p in texts))
        wall = time.monotonic() - started
    ttfts = sorted(r[0] for r in results)
    generated = sum(r[1] for r in results)
    return {
        "clients": clients,
        "tokens_per_s": generated / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
        "generated": generated,
        "wall_s": wall,
    }


def run(name: str, extra: list[str], levels: list[int], max_new_tokens: int) -> list[dict]:
    port = 31900 + (0 if name == "batch" else 1)
    proc = start_worker(port, extra)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(level(url, 1, 8))  # warm-up
        rows = []
        for n in levels:
            row = asyncio.run(level(url, n, max_new_tokens))
            print(f"{name:<10} {json.dumps(row)}", flush=True)
            rows.append(row)
        return rows
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    # Both engines in bf16 by default (fast on this CPU's AMX); --dtype float32 compares in fp32.
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    common = ["--dtype", args.dtype]
    ours = run(
        "batch",
        [*common, "--engine", "batch", "--max-batch-size", "64"],
        args.levels,
        args.max_new_tokens,
    )
    base = run(
        "sequential",
        [*common, "--engine", "sequential", "--max-batch-size", "1"],
        args.levels,
        args.max_new_tokens,
    )
    print()
    print(
        "| clients | batch tok/s | baseline tok/s | speed-up | batch TTFT p50 / p95 (s) "
        "| baseline TTFT p50 / p95 (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for o, b in zip(ours, base, strict=True):
        print(
            f"| {o['clients']} | {o['tokens_per_s']:.1f} | {b['tokens_per_s']:.1f} "
            f"| {o['tokens_per_s'] / b['tokens_per_s']:.1f}x "
            f"| {o['ttft_p50']:.2f} / {o['ttft_p95']:.2f} "
            f"| {b['ttft_p50']:.2f} / {b['ttft_p95']:.2f} |"
        )


if __name__ == "__main__":
    main()
