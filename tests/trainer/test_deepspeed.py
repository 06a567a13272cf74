"""The 30B script's DeepSpeed ZeRO-3 path (preset ``camel-30b-full-deepspeed``) on CPU, as far as
DeepSpeed goes without a GPU: its JSON accepted by transformers and validated by DeepSpeed with
every "auto" filled, and the trainer's own launch (accelerate, DEEPSPEED, two gloo ranks) training
with parameters and optimizer state partitioned and offloaded (DeepSpeedCPUAdam), cancelled after
a checkpoint, resumed from that ZeRO checkpoint, and publishing a whole 16-bit-gathered model.

DeepSpeed lives in ``.venv/deepspeed`` (``make deepspeed-cpu``), put on the training processes'
PYTHONPATH only; its CPU Adam is compiled at first use, so a C++ compiler is needed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.trainer.launcher import run_launched
from services.trainer.model_setup import resolve_precision
from shared.training import FineTuneRequest
from shared.training_presets import CONFIG_DIR, DEEPSPEED_CONFIG_NAME, PRESETS
from tests.trainer.builders import EventLog, repetitive_dataset, tiny_request, write_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
DEEPSPEED_DIR = REPO_ROOT / ".venv" / "deepspeed"
PRESET = "camel-30b-full-deepspeed"

CONFIG_PROBE = """
import json, sys
from deepspeed.runtime.config import DeepSpeedConfig
from transformers import LlamaConfig, TrainingArguments
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

args = TrainingArguments(output_dir=sys.argv[2], deepspeed=sys.argv[1], bf16=True, use_cpu=True,
    per_device_train_batch_size=1, gradient_accumulation_steps=8, learning_rate=2e-5,
    weight_decay=0.0, warmup_steps=0.04, lr_scheduler_type="linear", report_to="none")

class Model:  # what trainer_config_finalize reads: the 30B model's width
    config = LlamaConfig(hidden_size=6656)

hf = args.hf_deepspeed_config
hf.trainer_config_finalize(args, Model(), 1000)
validated = DeepSpeedConfig(hf.config)
print(json.dumps({"zero3": is_deepspeed_zero3_enabled(), "config": hf.config,
                  "stage": validated.zero_optimization_stage,
                  "train_batch_size": validated.train_batch_size}))
"""


@pytest.fixture
def deepspeed_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """The PYTHONPATH under which ``import deepspeed`` works, set for spawned processes."""
    if importlib.util.find_spec("deepspeed") is not None:
        return os.environ.get("PYTHONPATH", "")
    if not (DEEPSPEED_DIR / "deepspeed").is_dir():
        pytest.skip("DeepSpeed is not installed: make deepspeed-cpu")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: DeepSpeed builds its CPU Adam at first use")
    path = os.pathsep.join(p for p in (str(DEEPSPEED_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    probe = subprocess.run(
        [sys.executable, "-c", "import deepspeed"], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"deepspeed does not import here: {probe.stderr.strip()[-300:]}")
    monkeypatch.setenv("PYTHONPATH", path)
    return path


def test_the_zero3_config_is_accepted_and_validated(deepspeed_path: str, tmp_path: Path) -> None:
    config_file = REPO_ROOT / CONFIG_DIR / DEEPSPEED_CONFIG_NAME
    assert json.loads(config_file.read_text()) == PRESETS[PRESET].deepspeed
    done = subprocess.run(
        [sys.executable, "-c", CONFIG_PROBE, str(config_file), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": deepspeed_path},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["zero3"] and report["stage"] == 3
    assert report["train_batch_size"] == 8  # 1 per device x 8 accumulation x 1 process
    config = report["config"]
    assert "auto" not in json.dumps(config)
    zero = config["zero_optimization"]
    assert zero["offload_param"]["device"] == zero["offload_optimizer"]["device"] == "cpu"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["reduce_bucket_size"] == 6656 * 6656
    assert config["optimizer"]["params"]["lr"] == 2e-5
    assert config["scheduler"]["params"]["warmup_num_steps"] == 40
    assert config["bf16"]["enabled"] is True


# Enough steps that the stop asked at the first checkpoint lands before the end on a fast machine.
MAX_STEPS = 12


def _request(model: Path, data: Path) -> FineTuneRequest:
    return tiny_request(
        model,
        data,
        method="full",
        preset=PRESET,
        hyperparameters={
            "max_steps": MAX_STEPS,
            "batch_size": 1,
            "gradient_accumulation_steps": 2,
            "save_steps": 2,
            "eval_steps": 100,
            "gradient_checkpointing": False,
        },
    )


@pytest.mark.timeout(1500)  # the first run on a machine compiles DeepSpeed's CPU Adam
def test_two_ranks_train_with_zero3_offload_stop_and_resume(
    deepspeed_path: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "train.json", repetitive_dataset())
    request, job = _request(tiny_model_dir, data), tmp_path / "job"

    first = EventLog()
    stopped = run_launched(request, job, first, lambda: bool(first.of_type("checkpoint")), 2,
                           use_gpus=True)  # fmt: skip
    assert stopped["status"] == "cancelled"
    newest = max(job.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    step = int(newest.name.split("-")[1])
    assert step < MAX_STEPS
    partitions = sorted(p.name for p in (newest / f"global_step{step}").iterdir())
    # The job trains in bf16 where the CPU runs it natively, else in fp32: DeepSpeed names the
    # optimizer partitions after the precision.
    optim = "bf16_zero" if resolve_precision() == "bf16" else "zero"
    assert partitions == sorted(
        [f"{optim}_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)]
        + [f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt" for rank in (0, 1)]
    )

    second = EventLog()
    result = run_launched(request, job, second, lambda: False, 2, use_gpus=True)
    assert result["status"] == "succeeded", result
    assert f"resuming from checkpoint-{step} (step {step})" in second.messages()
    assert sorted(second.losses()) == list(range(step + 1, MAX_STEPS + 1))
    assert "DeepSpeed" in (job / "launch/train.log").read_text()

    import torch
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(result["final_dir"], dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    name = "model.layers.0.self_attn.q_proj.weight"
    weights = dict(trained.named_parameters())[name]
    assert weights.shape == dict(base.named_parameters())[name].shape  # gathered, not a shard
    assert not torch.allclose(weights, dict(base.named_parameters())[name])
