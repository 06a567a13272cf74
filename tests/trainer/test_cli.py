"""The CLI as a user runs it (one process, and two processes under torchrun), and the presets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from transformers import AutoTokenizer

from services.trainer.data import prepare_data
from services.trainer.presets import CONFIG_DIR, DEEPSPEED_CONFIG_NAME, PRESETS
from services.trainer.rendering import training_conversation
from services.trainer.train import build_parser, request_from_args
from tests.support import REPO_ROOT, free_port
from tests.trainer.builders import repetitive_dataset, write_dataset

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_cli_trains_and_exits_non_zero_on_training_errors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "chats.jsonl", repetitive_dataset(24), jsonl=True)
    args = [
        "--base-model", str(tiny_model_dir), "--data-path", str(data),
        "--output-dir", str(tmp_path / "job"), "--method", "lora", "--template", "vicuna_v1.1",
        "--max-steps", "3", "--save-steps", "2", "--max-length", "128", "--batch-size", "2",
        "--lora-r", "4", "--no-packing", "--validation-split", "0",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "services.trainer.train", *args],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert result["status"] == "succeeded" and result["steps"] == 3
    assert "[metrics] step 3, loss" in done.stdout
    assert "[checkpoint] step 2" in done.stdout
    adapter = json.loads((tmp_path / "job" / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 4

    failed = subprocess.run(
        [sys.executable, "-m", "services.trainer.train", *args[:1], str(tmp_path / "no-model"),
         *args[2:4], "--output-dir", str(tmp_path / "job2")],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "training failed: model: base model folder" in failed.stderr


def test_two_processes_share_the_work_and_rank_zero_writes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """torchrun on CPU (gloo): the distributed path accelerate launch takes on GPUs."""
    data = write_dataset(tmp_path / "chats.json", repetitive_dataset(32))
    job = tmp_path / "job"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), "-m", "services.trainer.train",
         "--base-model", str(tiny_model_dir), "--data-path", str(data), "--output-dir", str(job),
         "--max-steps", "2", "--save-steps", "1", "--max-length", "128", "--batch-size", "1",
         "--validation-split", "0", "--no-progress"],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"status": "succeeded"') == 1  # only rank 0 reports
    result = json.loads((job / "result.json").read_text())
    assert result["steps"] == 2
    checkpoint = job / "checkpoints" / "checkpoint-1"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {
        "rng_state_0.pth", "rng_state_1.pth"
    }  # fmt: skip
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    # Both processes' rows are counted at step 1 (one row each; a row holds one sample here).
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = training_conversation("chat_template", tokenizer)
    lengths = [
        len(s.input_ids) for s in prepare_data(data, None, 0, 0, template, tokenizer, 128).train
    ]
    assert 2 * min(lengths) > 128  # no row holds two samples
    assert 2 * min(lengths) <= state["num_input_tokens_seen"] <= 2 * max(lengths)
    assert (job / "final" / "adapter_model.safetensors").is_file()


def test_preset_flags_override_and_defaults_apply(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--preset", "camel-qlora-1gpu", "--base-model", "m", "--data-path", "d.json",
         "--output-dir", str(tmp_path), "--learning-rate", "2e-4", "--no-gradient-checkpointing"]
    )  # fmt: skip
    request, limit = request_from_args(args)
    hp = request.hyperparameters
    assert (request.method, request.gpus, limit) == ("qlora", 1, 100)
    assert (hp.learning_rate, hp.gradient_checkpointing, hp.lora_r) == (2e-4, False, 64)
    assert hp.lora_target_modules == "all-linear"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_requests_and_launch_configs(name: str) -> None:
    preset = PRESETS[name]
    request = preset.request(model="/models/llama-7b", training_file="/data/camel.json")
    hp = request.hyperparameters.resolved(request.method)
    assert request.gpus == preset.accelerate["num_processes"]
    if request.method == "full":
        assert preset.global_batch == 128  # every full recipe of the original
        assert hp.learning_rate == 2e-5 and hp.warmup_ratio == 0.04
    else:
        assert (hp.lora_r, hp.lora_alpha, hp.lora_dropout, hp.max_grad_norm) == (64, 16, 0.05, 0.3)
        assert (hp.bits, hp.quant_type, hp.double_quant) == (4, "nf4", True)

    # The checked-in configs are exactly what the presets say, and accelerate accepts them.
    for file_name, content in preset.config_files().items():
        path = REPO_ROOT / CONFIG_DIR / file_name
        regenerate = f"python -m services.trainer.presets --write {CONFIG_DIR}"
        assert path.read_text() == content, f"stale {file_name}: run {regenerate}"
    config = load_config_from_file(str(REPO_ROOT / CONFIG_DIR / f"{name}.yaml"))
    assert config.num_processes == preset.accelerate["num_processes"]
    raw = yaml.safe_load((REPO_ROOT / CONFIG_DIR / f"{name}.yaml").read_text())
    if raw["distributed_type"] == "FSDP":
        fsdp = raw["fsdp_config"]
        assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if raw["distributed_type"] == "DEEPSPEED":
        ds_path = REPO_ROOT / raw["deepspeed_config"]["deepspeed_config_file"]
        assert ds_path.name == DEEPSPEED_CONFIG_NAME
        ds = json.loads(ds_path.read_text())
        zero = ds["zero_optimization"]
        assert zero["stage"] == 3
        assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "cpu"
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True  # whole final model


def test_launch_scripts_parse_and_name_existing_presets() -> None:
    scripts = sorted((REPO_ROOT / "scripts" / "train").glob("*.sh"))
    assert len(scripts) == 6
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        text = script.read_text()
        if script.name != "common.sh":
            if "PRESET=" in text:
                preset = text.split("PRESET=", 1)[1].split()[0]
                assert preset in PRESETS, script.name
            else:  # the original's command line, by train_mem / train_qlora
                assert "--model_name_or_path" in text and "--lazy_preprocess True" in text
            assert "-m services.trainer.train" in text
            assert "<path_to_hf_llama_model>" in text  # documented placeholders


def test_launch_script_refuses_unfilled_placeholders() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("MODEL_PATH", "DATA_PATH", "SLURM_SUBMIT_DIR")}
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "train" / "train_camel_qlora.sh")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "set MODEL_PATH" in done.stderr
