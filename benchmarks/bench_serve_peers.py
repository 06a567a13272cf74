"""Serving side by side: our worker (through the controller and straight) against FastChat 0.2.36's
worker and vLLM's CPU engine, in one run, on the same prompts.

``make bench-serve-peers`` installs the peers into venvs outside the repo
(``benchmarks/peers/install_*.sh``, cached under ``$PEERS_DIR``) and runs this script.

Every server gets the same questions about the default SmolLM2-135M-Instruct, from clients
released together, 64 new tokens each, temperature 0. OpenAI servers (ours via the
controller, vLLM) are driven by streaming ``/v1/chat/completions`` clients; FastChat's worker and
ours, straight, by the worker protocol with the chat template applied by us (the same text). Each
server runs alone on the machine; we report aggregate generated tokens/s and the p95 time to
first token, and ratios to ours through the controller. Every server is first warmed up at
every level; each figure is the median of ``--repeats`` (3) runs. ``ours, straight`` vs
``ours, via the controller`` is the cost of the controller hop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_serve import QUESTIONS, one_client, prompts  # noqa: E402
from shared.settings import default_model_dir  # noqa: E402

PEERS_DIR = Path(os.environ.get("PEERS_DIR", "/root/.cache/camel-chat/peers"))
MODEL_NAME = "SmolLM2-135M-Instruct"
Client = Callable[[httpx.AsyncClient, int], Awaitable[tuple[float, int]]]


@dataclass
class Target:
    """One row of the table: a way of asking a server, and the levels it is measured at."""

    name: str
    client: Client
    levels: list[int]
    results: dict[int, dict] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(url: str, proc: subprocess.Popen, timeout: float, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.request(method, url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def processes() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start processes (logs in a temporary folder) and stop them all at the end."""
    started: list[subprocess.Popen] = []
    logs = Path(tempfile.mkdtemp(prefix="bench-serve-peers-"))

    def start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(proc)
        return proc

    try:
        yield start
    except Exception:
        print(f"logs: {logs}", file=sys.stderr)
        raise
    finally:
        for proc in reversed(started):
            proc.terminate()
        for proc in reversed(started):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def openai_client(url: str, model: str, max_tokens: int) -> Client:
    async def ask(client: httpx.AsyncClient, i: int) -> tuple[float, int]:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started, ttft, tokens = time.monotonic(), float("nan"), 0
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                choices = chunk.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content") and ttft != ttft:
                    ttft = time.monotonic() - started
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        return ttft, tokens

    return ask


def worker_client(url: str, texts: list[str], max_tokens: int) -> Client:
    async def ask(client: httpx.AsyncClient, i: int) -> tuple[float, int]:
        return await one_client(client, url, texts[i], max_tokens)

    return ask


async def measure(client_fn: Client, clients: int) -> dict:
    async with httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=256)) as c:
        started = time.monotonic()
        results = await asyncio.gather(*(client_fn(c, i) for i in range(clients)))
        wall = time.monotonic() - started
    ttfts = sorted(r[0] for r in results)
    return {
        "tokens_per_s": sum(r[1] for r in results) / wall,
        "ttft_p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))],
        "generated": sum(r[1] for r in results),
        "wall_s": wall,
    }


def run_targets(targets: list[Target], repeats: int = 3) -> None:
    # Warm-up at every level first, for every server alike: the first batch of a new size pays
    # one-time costs (kernel selection for new shapes, cache growth) that are not serving speed.
    for n in sorted({n for t in targets for n in t.levels}):
        asyncio.run(measure(targets[0].client, n))
    # Interleaved per level, so that a change in the machine's load hits the targets alike; each
    # figure is the run with the median tokens/s of ``repeats`` (this machine's speed drifts by
    # 10-20% from one minute to the next).
    for n in sorted({n for t in targets for n in t.levels}):
        runs: dict[str, list[dict]] = {t.name: [] for t in targets}
        for _ in range(repeats):
            for target in (t for t in targets if n in t.levels):
                runs[target.name].append(asyncio.run(measure(target.client, n)))
        for target in (t for t in targets if n in t.levels):
            ordered = sorted(runs[target.name], key=lambda r: r["tokens_per_s"])
            target.results[n] = ordered[len(ordered) // 2]
            print(f"{target.name}: {n} clients {json.dumps(target.results[n])}", flush=True)


def ours(
    start: Callable, model: Path, dtype: str, levels: list[int], max_tokens: int, threads: int = 0
) -> tuple[list[Target], list[str]]:
    """Controller + one worker (Redis from scripts/ensure_redis.py): via the controller's OpenAI
    API, and the same worker straight through the worker protocol."""
    redis_url = subprocess.check_output(
        [sys.executable, "scripts/ensure_redis.py"], cwd=ROOT, text=True
    ).strip()
    env = {
        # A stack of its own: not the credentials `make up` wrote into .env (with them, the
        # controller asked for a key and the benchmark never saw the worker's model).
        "CAMEL_ENV_FILE": "",
        "ALLOW_UNAUTHENTICATED": "true",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"bench-serve-peers-{os.getpid()}:",
        "LOG_LEVEL": "WARNING",
    }
    cport, wport = free_port(), free_port()
    controller = f"http://127.0.0.1:{cport}"
    cmd = [sys.executable, "-m", "services.controller", "--port", str(cport)]
    proc = start("controller", cmd, env)
    wait_until(f"{controller}/test_connection", proc, 60)
    worker_cmd = [
        sys.executable, "-m", "services.model_worker", "--port", str(wport), "--model-path",
        str(model), "--controller-address", controller, "--limit-model-concurrency", "64",
    ]  # fmt: skip
    if dtype != "auto":
        worker_cmd += ["--dtype", dtype]
    # threads=1: the worker computes on one core, as vLLM does here (the other is left to the
    # controller and the clients); 0: torch's own choice (every core).
    wenv = {**env, "OMP_NUM_THREADS": str(threads)} if threads else env
    wproc = start(f"worker-{dtype}", worker_cmd, wenv)
    worker = f"http://127.0.0.1:{wport}"
    wait_until(f"{worker}/health", wproc, 180)
    deadline = time.monotonic() + 30
    while MODEL_NAME not in httpx.get(f"{controller}/v1/models").text:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not register")
        time.sleep(0.5)
    texts = prompts(worker, max(levels))
    label = "default dtype" if dtype == "auto" else dtype
    label += f", {threads} thread{'s' * (threads > 1)}" if threads else ""
    via = openai_client(controller, MODEL_NAME, max_tokens)
    straight = worker_client(worker, texts, max_tokens)
    return [
        Target(f"ours ({label}), via the controller", via, levels),
        Target(f"ours ({label}), straight to the worker", straight, levels),
    ], texts


def vllm_dtype(choice: str) -> str:
    """``auto``: the dtype our worker chooses on this CPU (bf16 where it is native, else fp32),
    so both engines compute in the same one."""
    if choice != "auto":
        return choice
    from services.model_worker.loader import cpu_has_fast_bf16

    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def vllm(start: Callable, model: Path, levels: list[int], max_tokens: int, dtype: str) -> list:
    port = free_port()
    cmd = [
        str(PEERS_DIR / "vllm/bin/python"), str(ROOT / "benchmarks/peers/vllm_serve.py"), "serve",
        str(model), "--served-model-name", MODEL_NAME, "--dtype", dtype, "--enforce-eager",
        "--port", str(port), "--host", "127.0.0.1", "--max-model-len", "2048",
    ]  # fmt: skip
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "auto"}
    url = f"http://127.0.0.1:{port}"
    wait_until(f"{url}/v1/models", start("vllm", cmd, env), 600)
    short = {"bfloat16": "bf16", "float32": "fp32"}.get(dtype, dtype)
    name = f"vLLM 0.32 CPU ({short}, --enforce-eager)"
    return [Target(name, openai_client(url, MODEL_NAME, max_tokens), levels)]


def transformers4_copy(model: Path) -> Path:
    """The model folder as transformers 4 (FastChat's) reads it: links to the same files, with
    the tokenizer class that transformers 5 saved (``TokenizersBackend``) named as 4 knows it."""
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-peers-model-")) / model.name
    folder.mkdir()
    for item in model.iterdir():
        if item.name != "tokenizer_config.json":
            (folder / item.name).symlink_to(item.resolve())
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def fastchat(
    start: Callable, model: Path, texts: list[str], levels: list[int], mt: int, threads: int = 0
) -> list:
    model = transformers4_copy(model)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(PEERS_DIR / "fastchat/bin/python"), "-m", "fastchat.serve.model_worker",
        "--model-path", str(model), "--device", "cpu", "--port", str(port), "--host",
        "127.0.0.1", "--worker-address", url, "--no-register",
    ]  # fmt: skip
    # FastChat writes its log files into LOGDIR (default: the working directory, our repo).
    env = {"LOGDIR": str(model.parent), **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    wait_until(f"{url}/worker_get_status", start("fastchat", cmd, env), 300, method="POST")
    name = "FastChat 0.2.36 worker (its defaults, worker protocol)"
    return [Target(name, worker_client(url, texts, mt), levels)]


def chat_texts(model: Path, n: int) -> list[str]:
    """The questions with the model's chat template, when no worker of ours was asked."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for i in range(n)
    ]


def table(targets: list[Target], levels: list[int]) -> str:
    """Markdown: tokens/s and p95 TTFT per level, and the ratio of our controller row's tok/s
    to each row's (>1: we are faster)."""
    reference = next((t for t in targets if "via the controller" in t.name), None)
    head = "| server | " + " | ".join(f"{n} cl. tok/s | p95 TTFT @{n}" for n in levels) + " |"
    lines = [head, "|" + " --- |" * (1 + 2 * len(levels))]
    for t in targets:
        cells = []
        for n in levels:
            r = t.results.get(n)
            if r is None:
                cells += ["–", "–"]
                continue
            ours_mark = ""
            if reference is not None and t is not reference and n in reference.results:
                ratio = reference.results[n]["tokens_per_s"] / r["tokens_per_s"]
                ours_mark = f" (ours {ratio:.2f}x)"
            cells += [f"{r['tokens_per_s']:.1f}{ours_mark}", f"{r['ttft_p95']:.2f} s"]
        lines.append(f"| {t.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--fastchat-levels", type=int, nargs="*", default=[1, 16])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per level; the median counts")
    parser.add_argument("--only", nargs="*", default=["fastchat", "ours", "vllm"])
    parser.add_argument(
        "--ours-dtypes", nargs="+", default=["auto"], help="auto: the worker's own choice"
    )
    parser.add_argument(
        "--ours-threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS of our worker and FastChat's; 1: one core, as vLLM; 0: torch's",
    )
    parser.add_argument(
        "--vllm-dtype", default="auto", help="auto: the one our worker chooses on this CPU"
    )
    args = parser.parse_args()
    model, levels, mt = default_model_dir(), args.levels, args.max_new_tokens
    targets: list[Target] = []
    texts: list[str] = []
    # Ours first (its prompts serve FastChat too), then the peers in the order given.
    for dtype in args.ours_dtypes if "ours" in args.only else []:
        with processes() as start:
            group, texts = ours(start, model, dtype, levels, mt, args.ours_threads)
            run_targets(group, args.repeats)
            targets += group
    for peer in (p for p in args.only if p != "ours"):
        with processes() as start:
            if peer == "vllm":
                group = vllm(start, model, levels, mt, vllm_dtype(args.vllm_dtype))
            elif args.fastchat_levels:
                texts = texts or chat_texts(model, max(args.fastchat_levels))
                group = fastchat(start, model, texts, args.fastchat_levels, mt, args.ours_threads)
            else:
                continue
            run_targets(group, args.repeats)
            targets += group
    print()
    print(table(targets, levels))


if __name__ == "__main__":
    main()
