"""bf16 against fp32 on the default model: greedy agreement on a fixed prompt set.

``python benchmarks/bf16_agreement.py [--tokens 32]`` decodes each question greedily in both
dtypes (the chat template applied) and prints, per prompt, how many leading tokens agree, and the
share of prompts that agree on all of the first N tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_serve import QUESTIONS  # noqa: E402
from shared.settings import default_model_dir  # noqa: E402

MORE = [
    "What is the capital of France?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "Translate 'good morning' into Spanish and German.",
    "What is 17 times 23?",
    "Give a Python function that reverses a string.",
    "Why is the sky blue?",
    "Name three planets of the solar system.",
    "What does HTTP stand for?",
]


def greedy(model, tokenizer, question: str, tokens: int) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    out = model.generate(ids, max_new_tokens=tokens, do_sample=False, min_new_tokens=tokens)
    return out[0, ids.shape[1] :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = [*QUESTIONS, *MORE]
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
        with torch.inference_mode():
            runs[dtype] = [greedy(model, tokenizer, q, args.tokens) for q in questions]
    full = 0
    for q, a, b in zip(questions, runs[torch.float32], runs[torch.bfloat16], strict=True):
        same = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
        full += same == len(a)
        print(f"{same:>3}/{len(a)}  {q}")
    print(f"{full}/{len(questions)} prompts agree on all of the first {args.tokens} tokens")


if __name__ == "__main__":
    main()
