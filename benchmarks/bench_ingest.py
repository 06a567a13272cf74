"""Ingestion benchmark: a synthetic 100k-conversation mixture in the upstream layouts, through the
whole pipeline with the real default tokenizer; prints records/s and peak memory per stage.

``python benchmarks/bench_ingest.py [--conversations 100000] [--workers N] [--keep DIR]``

The mixture follows the released camel_chat proportions (CAMEL chat and science, ShareGPT,
Alpaca) with long-tailed lengths; about 3% of ShareGPT is French, so the language filter works.
Peak memory per stage is sampled (RSS of this process plus its workers, every 0.2 s); the
``ru_maxrss`` line is the kernel's own peak for this process and for its largest waited-for
child (pool workers are started by a forkserver, so they are its children, not ours: their memory
shows in the sampled figures).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import resource
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from services.ingestor.pipeline import IngestSpec, run_pipeline  # noqa: E402
from services.ingestor.stages.counts import STAGES  # noqa: E402
from shared.settings import default_model_dir  # noqa: E402

_WORDS_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their can has been if more when will "
    "would who so no out up into do time only could new them some these then two first may any "
    "like now my such make over our even most after also made many before must through years "
    "where much well way down should because each just those people how too little state good "
    "very make world still own see men work long here get both between life being under never "
    "day same another know while last might great old year off come since against go came right "
    "used take three states himself few house use during without again place around however home "
    "small found thought went say part once general high upon school every does got united left "
    "number course war until always away something fact though water less public put think almost "
    "hand enough far took head yet government system better set told nothing night end why called "
    "program function value list data result example method class return loop variable problem"
)
WORDS = _WORDS_TEXT.split()
_FRENCH_TEXT = (
    "le la les de des du un une et est dans pour que qui sur pas plus avec ce cette il elle nous "
    "vous ils sont être avoir fait comme mais ou donc leur tout bien très aussi peut encore"
)
FRENCH = _FRENCH_TEXT.split()
MIXTURE = {"camel_chat": 0.25, "camel_science": 0.30, "sharegpt": 0.28, "alpaca": 0.17}


def text(
    rng: random.Random, mean_words: float, vocab: list[str] = WORDS, sigma: float = 0.8
) -> str:
    n = max(3, int(rng.lognormvariate(0, sigma) * mean_words))
    words = rng.choices(vocab, k=n)
    for i in range(0, n, 14):  # sentences
        words[i] = words[i].capitalize()
        if i:
            words[i - 1] += "."
    return " ".join(words) + "."


def camel_chat(rng: random.Random, i: int) -> dict:
    record = {"role_1": "Programmer", "role_2": "Teacher", "original_task": text(rng, 12)}
    rounds = rng.randint(3, 12)
    n = 0
    for r in range(rounds):
        n += 1
        user = (
            f"Instruction: {text(rng, 35)}\nInput: None"
            if r % 3
            else f"Instruction: {i} {text(rng, 35)}"
        )
        record[f"message_{n}"] = {"role_type": "USER", "role_name": "Teacher", "content": user}
        n += 1
        answer = f"Solution: {text(rng, 110)} Next request."
        record[f"message_{n}"] = {"role_type": "ASSISTANT", "role_name": "Dev", "content": answer}
    n += 1
    record[f"message_{n}"] = {"role_type": "USER", "content": "<CAMEL_TASK_DONE>"}
    record["termination_reason"] = "<CAMEL_TASK_DONE>"
    record["num_messages"] = n
    return record


def science(rng: random.Random, i: int) -> dict:
    return {
        "role_1": "Physicist",
        "topic;": "Mechanics",
        "sub_topic": "Motion",
        "message_1": f"Problem {i}: {text(rng, 60)}",
        "message_2": text(rng, 220),
    }


def sharegpt(rng: random.Random, i: int) -> dict:
    vocab = FRENCH if rng.random() < 0.03 else WORDS
    turns = []
    for r in range(max(1, int(rng.lognormvariate(1.0, 0.7)))):
        turns.append({"from": "human", "value": text(rng, 40, vocab)})
        body = "".join(f"<p>{text(rng, 60, vocab)}</p>" for _ in range(rng.randint(1, 5)))
        if rng.random() < 0.3:
            body += (
                '<pre><div class="bg-black"><span>python</span>Copy code<code>'
                f"def f_{i}_{r}(x):\n    return x + {r}\n</code></div></pre>"
            )
        if rng.random() < 0.3:
            items = "".join(f"<li>{text(rng, 15, vocab)}</li>" for _ in range(rng.randint(2, 6)))
            body += f"<ol>{items}</ol>"
        turns.append({"from": "gpt", "value": f'<div class="markdown prose">{i} {body}</div>'})
    return {"id": f"sg{i}", "conversations": turns}


def alpaca(rng: random.Random, i: int) -> dict:
    instruction = f"{text(rng, 14)} ({i})"
    input_text = text(rng, 20) if rng.random() < 0.4 else ""
    output = text(rng, 60)
    return {"instruction": instruction, "input": input_text, "output": output, "text": ""}


def build_mixture(folder: Path, total: int, seed: int = 0) -> dict[str, int]:
    """Write the mixture in upstream layouts; returns conversations per kind."""
    rng = random.Random(seed)
    counts = {kind: int(total * share) for kind, share in MIXTURE.items()}
    counts["camel_chat"] += total - sum(counts.values())
    folder.mkdir(parents=True, exist_ok=True)

    with tarfile.open(folder / "ai_society_chat.tar.gz", "w:gz", compresslevel=1) as tar:
        for i in range(counts["camel_chat"]):
            data = json.dumps(camel_chat(rng, i), indent=4).encode()
            info = tarfile.TarInfo(
                f"{i // 2500 + 1:03d}_{i // 50 % 50 + 1:03d}_{i % 50 + 1:03d}.json"
            )
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(folder / "physics.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(counts["camel_science"]):
            zf.writestr(f"{i // 100 + 1}_{i % 100 + 1}.json", json.dumps(science(rng, i)))
    half = counts["sharegpt"] // 2
    for part, (start, stop) in enumerate(((0, half), (half, counts["sharegpt"])), 1):
        path = folder / "HTML_cleaned_raw_dataset" / f"sg_90k_part{part}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps([sharegpt(rng, i) for i in range(start, stop)]))
    rows = [alpaca(rng, i) for i in range(counts["alpaca"])]
    (folder / "data").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train.parquet")
    return counts


class MemorySampler:
    """Peak RSS of this process plus its children, attributed to the stage running."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.stage = "start"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker may exit meanwhile
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)

    def progress(self, stage: str, done: int, total: int | None) -> None:
        self.stage = stage

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stage_records(manifest: dict, stage: str) -> int:
    counts = manifest["stages"][stage]
    return counts["in"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--tokenizer-path", default=str(default_model_dir()))
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = args.keep or Path(tmp)
        started = time.monotonic()
        counts = build_mixture(root / "mixture", args.conversations)
        generated = time.monotonic() - started
        size = sum(p.stat().st_size for p in (root / "mixture").rglob("*") if p.is_file())
        print(f"mixture: {counts} ({size / 2**20:.0f} MiB on disk), generated in {generated:.0f} s")

        spec = IngestSpec(
            sources=[str(root / "mixture")],
            tokenizer_path=args.tokenizer_path,
            max_length=args.max_length,
            workers=args.workers,
        )
        with MemorySampler() as sampler:
            started = time.monotonic()
            manifest = run_pipeline(spec, root / "work", sampler.progress)
            total_seconds = time.monotonic() - started

    print(f"tokenizer={manifest['tokenizer']} max_length={manifest['max_length']}")
    setup = sampler.peaks.get("start", 0) / 2**20
    print(f"peak RSS before the first stage (imports, tokenizer load): {setup:.0f} MiB")
    print(f"{'stage':<9}{'records in':>12}{'seconds':>10}{'records/s':>12}{'peak RSS MiB':>14}")
    for stage in STAGES:
        seconds = manifest["seconds"][stage]
        n = stage_records(manifest, stage)
        rate = n / seconds if seconds else float("inf")
        peak = sampler.peaks.get(stage, 0) / 2**20
        print(f"{stage:<9}{n:>12}{seconds:>10.1f}{rate:>12.0f}{peak:>14.0f}")
    raw = manifest["stages"]["convert"]["in"]
    print(
        f"{'total':<9}{raw:>12}{total_seconds:>10.1f}{raw / total_seconds:>12.0f}"
        f"{max(sampler.peaks.values(), default=0) / 2**20:>14.0f}"
    )
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        f"ru_maxrss: self {self_kib / 1024:.0f} MiB, largest child {children_kib / 1024:.0f} MiB, "
        f"sum {(self_kib + children_kib) / 1024:.0f} MiB"
    )
    print(
        f"samples={manifest['records']} token_lengths={manifest['token_lengths']} "
        f"dropped={manifest['dropped_by_reason']} rejected={manifest['rejected']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
