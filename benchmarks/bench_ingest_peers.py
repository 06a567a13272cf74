"""Ingest side by side: FastChat 0.2.36's ShareGPT scripts against our ingestor, on one file.

``python benchmarks/bench_ingest_peers.py [--records 20000] [--skip-fastchat] [--flat]``

Generates a ShareGPT list file of ChatGPT-web HTML (``<div class="markdown prose">`` answers,
code blocks with a language label and "Copy code", lists, tables, regenerate counters, defects:
wrong role order, a trailing human turn, one-turn records, blocked words, duplicate ids and
answers, empty values), then times, as separate processes:

- FastChat: ``fastchat.data.clean_sharegpt`` then ``fastchat.data.split_long_conversation``
  (``--max-length 2048``, the same tokenizer), in its own venv (``FASTCHAT_VENV``, default
  ``/root/.cache/camel-chat/peers/fastchat``; installed under a lock when missing);
- ours: ``python -m services.ingestor run --sources FILE --keep-lang all`` (same tokenizer and
  max length: convert, filter, split, merge).

Peak RSS is the largest sampled sum over the process and all its descendants (every 0.1 s).
``--flat`` also runs ours on a quarter of the records to show its peak does not grow with input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from shared.settings import default_model_dir  # noqa: E402

FASTCHAT_VENV = Path(os.environ.get("FASTCHAT_VENV", "/root/.cache/camel-chat/peers/fastchat"))
FASTCHAT_PACKAGES = (
    "fschat==0.2.36",
    "transformers==4.49.0",
    "beautifulsoup4",
    "markdownify==0.11.6",
)
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "one",
    "all",
    "we",
    "their",
    "can",
    "has",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "program",
    "function",
    "value",
    "list",
    "data",
    "result",
    "example",
    "method",
    "class",
    "return",
    "loop",
    "variable",
    "problem",
    "cell",
    "energy",
    "reaction",
    "molecule",
    "force",
    "velocity",
    "acid",
    "protein",
    "equation",
    "theorem",
    "proof",
    "market",
    "snake_case",
    "under_score",
    "x_1",
    "2*3",
    "[link]",
    "<tag>",
    "back\\slash",
    "`tick`",
    "#hash",
]
LANGS = ("python", "javascript", "bash", "sql", "")


def words(rng: random.Random, n: int) -> str:
    out = rng.choices(WORDS, k=max(3, n))
    for i in range(0, len(out), 12):
        out[i] = out[i].capitalize()
    return " ".join(out) + "."


def code_block(rng: random.Random, i: int) -> str:
    """The ChatGPT page's code block: a label bar with the language and "Copy code"."""
    lang = rng.choice(LANGS)
    lines = [f"def f_{i}_{k}(x_{k}):\n    return x_{k} * {k}  # {words(rng, 4)}" for k in range(3)]
    code = "\n".join(lines).replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<pre><div class="bg-black mb-4 rounded-md"><div class="flex items-center relative '
        f'text-gray-200 bg-gray-800 px-4 py-2 text-xs font-sans"><span class="">{lang}</span>'
        '<button class="flex ml-auto gap-2"><svg stroke="currentColor" fill="none"></svg>'
        'Copy code</button></div><div class="p-4 overflow-y-auto"><code class="!whitespace-pre '
        f'hljs language-{lang or "plaintext"}">{code}</code></div></div></pre>'
    )


def answer_html(rng: random.Random, i: int) -> str:
    parts = []
    for _ in range(rng.randint(2, 8)):
        kind = rng.random()
        if kind < 0.55:
            parts.append(f"<p>{words(rng, rng.randint(30, 150))}</p>")
        elif kind < 0.7:
            parts.append(code_block(rng, i))
        elif kind < 0.8:
            items = "".join(f"<li>{words(rng, 12)}</li>" for _ in range(rng.randint(2, 6)))
            parts.append(f"<{rng.choice(('ol', 'ul'))}>{items}</{rng.choice(('ol', 'ul'))}>")
        elif kind < 0.88:
            parts.append(
                f"<p>Use <code>x_{i}</code> with <strong>{words(rng, 3)}</strong> "
                f'and <em>{words(rng, 2)}</em>, see <a href="https://e.x/{i}">here</a>.</p>'
            )
        elif kind < 0.94:
            rows = "".join(
                f"<tr><td>{words(rng, 2)}</td><td>{k}</td></tr>" for k in range(rng.randint(1, 4))
            )
            parts.append(f"<table><thead><tr><th>a</th><th>b</th></tr></thead>{rows}</table>")
        else:
            parts.append(f"<h3>{words(rng, 4)}</h3><blockquote>{words(rng, 15)}</blockquote>")
    prefix = f"{rng.randint(1, 3)} / {rng.randint(3, 4)}" if rng.random() < 0.05 else ""
    body = "".join(parts)
    if rng.random() < 0.02:  # unclosed tags
        body = body.replace("</p>", "", 1)
    page = "markdown prose w-full break-words dark:prose-invert light"
    return f'{prefix}<div class="{page}">{body}</div>'


def record(rng: random.Random, i: int) -> dict:
    turns = []
    for _ in range(max(1, int(rng.lognormvariate(1.0, 0.8)))):
        turns.append({"from": "human", "value": words(rng, rng.randint(5, 60))})
        turns.append({"from": "gpt", "value": answer_html(rng, i)})
    defect = rng.random()
    if defect < 0.03:
        turns = turns[:1]  # too short
    elif defect < 0.05:
        turns.insert(1, {"from": "human", "value": "and?"})  # wrong format
    elif defect < 0.07:
        turns[-1]["value"] += " As an AI language model trained by OpenAI, ChatGPT"
    elif defect < 0.10:
        turns.append({"from": "human", "value": words(rng, 8)})  # trailing human
    elif defect < 0.12:
        turns.insert(0, {"from": "gpt", "value": "<p>Hello! How can I help?</p>"})
    elif defect < 0.13:
        turns[0]["value"] = ""
    return {"id": f"sg{i}_{rng.randint(0, 9)}", "conversations": turns}


def write_file(path: Path, count: int, seed: int = 0) -> int:
    """Stream ``count`` records as one JSON list; ~2% are duplicates of earlier ids/answers."""
    rng = random.Random(seed)
    recent: list[dict] = []
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for i in range(count):
            rec = record(rng, i)
            if recent and rng.random() < 0.02:
                rec = json.loads(json.dumps(rng.choice(recent)))
                if rng.random() < 0.5:
                    rec["id"] += "_copy"
            recent = ([*recent, rec])[-50:]
            f.write(("," if i else "") + json.dumps(rec))
        f.write("]")
    return path.stat().st_size


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    with contextlib.suppress(psutil.Error):  # the tree changes while it is read
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    return total


def timed(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, int]:
    """Run ``cmd`` to completion; (seconds, peak RSS of its process tree)."""
    started = time.monotonic()
    with log.open("w") as out:
        popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    proc = psutil.Process(popen.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.1):
            peak = max(peak, tree_rss(proc))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = popen.wait()
    seconds = time.monotonic() - started
    stop.set()
    sampler.join()
    if rc:
        raise SystemExit(f"{cmd[:4]} failed ({rc}); see {log}:\n{log.read_text()[-3000:]}")
    return seconds, peak


def ensure_fastchat() -> Path:
    python = FASTCHAT_VENV / "bin" / "python"
    if (FASTCHAT_VENV / ".installed").exists():
        return python
    script = (
        f"set -e; V={FASTCHAT_VENV}; [ -f $V/.installed ] && exit 0; rm -rf $V; "
        f"{sys.executable} -m venv $V; $V/bin/pip install -q torch==2.13.0; "
        f"$V/bin/pip install -q {' '.join(FASTCHAT_PACKAGES)}; touch $V/.installed"
    )
    lock = f"{FASTCHAT_VENV}.lock"
    FASTCHAT_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["flock", lock, "bash", "-c", script], check=True)
    return python


def fastchat_counts(cleaned: Path, split: Path) -> dict:
    return {
        "kept_after_clean": len(json.loads(cleaned.read_text())),
        "samples_after_split": len(json.loads(split.read_text())),
    }


def legacy_tokenizer(tokenizer: str, work: Path) -> str:
    """The same tokenizer.json for transformers 4.49, which does not know transformers 5's
    ``TokenizersBackend`` class name: a folder whose config names ``PreTrainedTokenizerFast``."""
    source, folder = Path(tokenizer), work / "fc_tokenizer"
    folder.mkdir(exist_ok=True)
    shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return str(folder)


def run_fastchat(data: Path, work: Path, tokenizer: str, max_length: int) -> dict:
    python = str(ensure_fastchat())
    tokenizer = legacy_tokenizer(tokenizer, work)
    cleaned, split = work / "fc_clean.json", work / "fc_split.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    clean_cmd = [python, "-m", "fastchat.data.clean_sharegpt", "--in", str(data)]
    s1, m1 = timed([*clean_cmd, "--out", str(cleaned)], work / "fc_clean.log", env)
    split_cmd = [python, "-m", "fastchat.data.split_long_conversation", "--in", str(cleaned)]
    split_cmd += ["--out", str(split), "--model-name-or-path", tokenizer]
    s2, m2 = timed([*split_cmd, "--max-length", str(max_length)], work / "fc_split.log", env)
    log = (work / "fc_clean.log").read_text()
    statuses = re.findall(r"total: [^\n]*", log)
    return {
        "seconds": s1 + s2,
        "peak": max(m1, m2),
        "detail": f"clean {s1:.1f} s + split {s2:.1f} s",
        "counts": {**fastchat_counts(cleaned, split), "clean": statuses[-1] if statuses else ""},
    }


def run_ours(data: Path, work: Path, tokenizer: str, max_length: int) -> dict:
    out = work / "ours"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "services.ingestor", "run", "--sources", str(data)]
    cmd += ["--work-dir", str(out), "--keep-lang", "all", "--tokenizer-path", tokenizer]
    cmd += ["--max-length", str(max_length)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    seconds, peak = timed(cmd, work / f"ours_{data.stem}.log", env)
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["stages"]
    counts = {
        name: {"in": s["in"], "kept": s["kept"], "dropped": s["dropped"]}
        for name, s in stages.items()
    }
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in manifest["seconds"].items())
    return {"seconds": seconds, "peak": peak, "detail": detail, "counts": counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--tokenizer-path", default=str(default_model_dir()))
    parser.add_argument("--skip-fastchat", action="store_true")
    parser.add_argument("--flat", action="store_true", help="also run ours on 1/4 of the file")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-peers-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "sharegpt_html.json"
        size = write_file(data, args.records)
        print(f"input: {args.records} records, {size / 1e6:.0f} MB of ShareGPT HTML")
        results = {}
        if not args.skip_fastchat:
            results["FastChat 0.2.36 clean+split"] = run_fastchat(
                data, work, args.tokenizer_path, args.max_length
            )
        results["ours (ingestor run)"] = run_ours(data, work, args.tokenizer_path, args.max_length)
        if args.flat:
            small = work / "sharegpt_quarter.json"
            write_file(small, args.records // 4)
            quarter = run_ours(small, work / "q", args.tokenizer_path, args.max_length)
            results[f"ours on {args.records // 4} records"] = quarter
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    print(f"{'run':<32}{'seconds':>9}{'peak RSS GB':>13}  detail")
    for name, r in results.items():
        print(f"{name:<32}{r['seconds']:>9.1f}{r['peak'] / 1e9:>13.2f}  {r['detail']}")
    names = list(results)
    if len(names) > 1 and names[0].startswith("FastChat"):
        ratio = results[names[0]]["seconds"] / results[names[1]]["seconds"]
        print(f"speed-up, ours vs FastChat: {ratio:.2f}x")
    for name, r in results.items():
        print(f"{name} counts: {json.dumps(r['counts'])}")


if __name__ == "__main__":
    raise SystemExit(main())
