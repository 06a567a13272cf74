"""Evaluator fixtures: the repo's offline multiple-choice task and its hand-computed scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "fixtures" / "data"
CAPITALS = DATA_DIR / "camel-chat" / "capitals_mc"


@pytest.fixture(scope="session")
def eval_data_dir() -> Path:
    return DATA_DIR


def capitals_docs(split: str = "test") -> list[dict]:
    return [json.loads(line) for line in (CAPITALS / f"{split}.jsonl").read_text().splitlines()]


def expected_scores(model_dir: Path, docs: list[dict]) -> dict[str, float]:
    """acc and acc_norm (x100) of the 0-shot task, from the model's own log-likelihoods,
    computed here with plain transformers: the choice with the highest log-likelihood of
    `` <choice>`` after ``Question: ...\\nAnswer:`` (acc_norm: divided by the choice's length)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    hits = {"acc": 0, "acc_norm": 0}
    for doc in docs:
        context = f"Question: {doc['question']}\nAnswer:"
        n_context = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        scores = []
        for choice in doc["choices"]:
            ids = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].log_softmax(-1)
            scores.append(sum(float(logits[t - 1, ids[t]]) for t in range(n_context, len(ids))))
        lengths = [len(choice) for choice in doc["choices"]]
        best = max(range(len(scores)), key=lambda i: scores[i])
        best_norm = max(range(len(scores)), key=lambda i: scores[i] / lengths[i])
        hits["acc"] += best == doc["answer"]
        hits["acc_norm"] += best_norm == doc["answer"]
    return {name: round(100 * count / len(docs), 2) for name, count in hits.items()}
