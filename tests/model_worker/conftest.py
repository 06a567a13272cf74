"""Fixtures of the model-worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import torch

from services.model_worker.loader import LoadedModel, load_model
from tests.support import ProcessGroup, start_worker_process


@pytest.fixture(scope="module")
def worker_url(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A worker process serving the tiny model as "tiny", without a controller."""
    with ProcessGroup(tmp_path_factory.mktemp("logs")) as group:
        launch = partial(group.start, "worker")
        url, _ = start_worker_process(
            launch, tiny_model_dir, "--no-register", "--model-names", "tiny"
        )
        yield url


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> LoadedModel:
    """The tiny model loaded on the CPU (one copy per test module), never choosing EOS greedily.

    Random weights may pick EOS at any step. A zero row gives EOS a logit of exactly 0, below the
    largest of the other ~500 random logits: greedy requests run to max_new_tokens, which keeps
    lengths and the timing of scheduling tests predictable.
    """
    # float32, not the CPU's auto choice (bf16 where it is fast): reference comparisons exact.
    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    with torch.no_grad():
        loaded.model.lm_head.weight[loaded.tokenizer.eos_token_id].zero_()
    return loaded
