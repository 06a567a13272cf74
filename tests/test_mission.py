"""The whole mission through real services, as one call: ingest -> LoRA job -> merge -> deploy
(answering a chat) -> chat.

The same code as ``make demo`` (``services.controller.demo.run_demo``), on the tiny model so it
fits in the test budget; every service is a real process talking over HTTP, Redis and Celery.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from safetensors.torch import load_file

from services.controller.demo import SAMPLES, run_demo
from tests.support import Stack

pytestmark = pytest.mark.slow


def test_samples_become_a_deployed_fine_tuned_model_that_answers(
    start_stack: Callable[..., Stack], tiny_model_dir: Path, tmp_path: Path
) -> None:
    stack = start_stack()
    api = stack.url
    for name in ("ingestor", "trainer", "merger"):
        stack.start(name)
    stack.start_pool(worker_ports=10)

    said: list[str] = []
    outcome = run_demo(
        api,
        str(tiny_model_dir),
        SAMPLES,
        hyperparameters={"max_steps": 6, "batch_size": 2, "max_length": 256, "save_steps": 3},
        say=said.append,
    )

    job = outcome["job"]
    assert job["status"] == "succeeded"
    # One call: every stage ran, each under its own record
    assert {n: s["status"] for n, s in job["stages"].items()} == dict.fromkeys(
        ["ingest", "train", "merge", "deploy"], "succeeded"
    )
    assert job["stages"]["ingest"]["id"] == outcome["dataset"]
    name = job["fine_tuned_model"]
    merged = tmp_path / "models" / name
    assert Path(job["merged_model_dir"]) == merged
    # A plain model folder: full weights (no adapter), tokenizer, the training template.
    assert (merged / "config.json").is_file()
    assert not (merged / "adapter_config.json").exists()
    assert (merged / "camel_training.json").is_file()
    weights = load_file(merged / "model.safetensors")
    assert not any("lora" in key for key in weights)
    assert outcome["deployment"]["status"] == "deployed"
    assert isinstance(outcome["reply"], str)  # streamed without error; realism is the demo's job
    assert name in [m["id"] for m in httpx.get(f"{api}/v1/models").json()["data"]]
    stages = [line for line in said if line.startswith("[")]
    assert [line[:5] for line in stages] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    assert any("loss" in line for line in said)
