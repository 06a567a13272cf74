"""The original's training command lines (``train_mem``, ``train_qlora``) through
HfArgumentParser into the jobs API's request, lazy tokenization, and the QLoRA script's caps,
memory budget and adapter resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from services.trainer.data import DataOptions, PreparedData, prepare_data
from services.trainer.errors import TrainingError
from services.trainer.hf_cli import FlagError, to_job
from services.trainer.loop import CamelTrainer
from services.trainer.model_setup import load_model
from services.trainer.packing import PackedRows
from services.trainer.rendering import training_conversation
from shared.training import FineTuneRequest, Hyperparameters
from tests.support import REPO_ROOT
from tests.trainer.builders import conversation, repetitive_dataset, write_dataset

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def seven_b_flags(model: Path, data: Path, out: Path) -> list[str]:
    """scripts/train/train_camel_7B.sh's flags, scaled down: steps, batch and length only."""
    return [
        "--model_name_or_path", str(model), "--data_path", str(data), "--bf16", "True",
        "--output_dir", str(out), "--num_train_epochs", "3", "--max_steps", "3",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
        "--gradient_accumulation_steps", "2", "--evaluation_strategy", "steps",
        "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
        "--save_total_limit", "8", "--learning_rate", "2e-5", "--weight_decay", "0.",
        "--warmup_ratio", "0.04", "--lr_scheduler_type", "cosine", "--logging_steps", "1",
        "--fsdp", "full_shard auto_wrap", "--fsdp_transformer_layer_cls_to_wrap",
        "LlamaDecoderLayer", "--tf32", "True", "--model_max_length", "128",
        "--gradient_checkpointing", "True", "--lazy_preprocess", "True",
    ]  # fmt: skip


def qlora_flags(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """scripts/train/train_camel_qlora.sh's flags, scaled down (fp32: exact resume losses)."""
    return [
        "--model_name_or_path", str(model), "--data_path", str(data), "--output_dir", str(out),
        "--num_train_epochs", "3", "--max_steps", "4", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--evaluation_strategy", "steps", "--eval_steps", "4", "--save_strategy", "steps",
        "--save_steps", "2", "--save_total_limit", "100", "--learning_rate", "1e-2",
        "--weight_decay", "0.", "--warmup_ratio", "0.03", "--lr_scheduler_type", "constant",
        "--logging_steps", "1", "--model_max_length", "128", "--gradient_checkpointing", "True",
        "--lazy_preprocess", "True", "--max_samples", "200", "--max_eval_samples", "3",
        "--double_quant", "--quant_type", "nf4", "--bits", "4", "--lora_r", "8",
        "--lora_alpha", "16", "--lora_dropout", "0.05", "--max_memory_MB", "80000",
        "--ddp_find_unused_parameters", "False", "--max_grad_norm", "0.3", *extra,
    ]  # fmt: skip


def run_module(module: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"services.trainer.{module}", *args],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def result_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{\n") :])


def losses(stdout: str) -> dict[int, str]:
    return {int(s): loss for s, loss in re.findall(r"\[metrics\] step (\d+), loss (\S+),", stdout)}


def test_the_7b_scripts_flags_become_the_jobs_api_request(tmp_path: Path) -> None:
    request, options, out, notes = to_job(seven_b_flags(Path("m"), Path("d.json"), tmp_path), False)
    assert isinstance(request, FineTuneRequest)  # the body POST /v1/fine_tuning/jobs takes
    assert FineTuneRequest.model_validate_json(request.model_dump_json()) == request
    hp = request.hyperparameters
    assert (request.model, request.training_file, request.method) == ("m", "d.json", "full")
    assert (hp.batch_size, hp.gradient_accumulation_steps, hp.max_steps) == (2, 2, 3)
    assert (hp.learning_rate, hp.lr_scheduler, hp.warmup_ratio) == (2e-5, "cosine", 0.04)
    assert (hp.eval_steps, hp.save_steps, hp.max_length) == (2, 2, 128)
    assert hp.lazy_preprocess and hp.gradient_checkpointing
    assert (options.precision, options.save_total_limit, out) == ("bf16", 8, tmp_path)
    assert options.trainer_arguments == {"per_device_eval_batch_size": 4}
    assert any(n.startswith("--tf32") for n in notes) and any("--fsdp" in n for n in notes)


def test_flags_the_job_cannot_take_are_named(tmp_path: Path) -> None:
    base = seven_b_flags(Path("m"), Path("d.json"), tmp_path)
    with pytest.raises(FlagError, match="--no_such_flag"):
        to_job([*base, "--no_such_flag", "1"], False)
    with pytest.raises(FlagError, match="--save_strategy epoch"):
        to_job([*base, "--save_strategy", "epoch"], False)
    with pytest.raises(FlagError, match="--model_max_length"):
        to_job([*base, "--model_max_length", "8"], False)  # under the request's minimum
    with pytest.raises(FlagError, match="--bits 3"):
        to_job(qlora_flags(Path("m"), Path("d"), tmp_path, "--bits", "3"), True)
    request, *_ = to_job(qlora_flags(Path("m"), Path("d"), tmp_path, "--bits", "16"), True)
    assert request.method == "lora"


def test_train_mem_runs_the_7b_scripts_flags(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "camel.json", repetitive_dataset(60))
    done = run_module("train_mem", seven_b_flags(tiny_model_dir, data, tmp_path / "out"))
    result = result_of(done)
    assert result["status"] == "succeeded" and result["steps"] == 3
    assert "eval_loss" in result["metrics"]
    assert "tokenized lazily" in done.stdout and "[checkpoint] step 2" in done.stdout
    assert "--tf32: no CUDA GPU here" in done.stderr
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()

    unknown = run_module("train_mem", ["--data_path", str(data), "--lora_r", "8"])
    assert unknown.returncode == 2 and "unknown flag(s) --lora_r 8" in unknown.stderr
    wrong_type = run_module("train_mem", ["--data_path", str(data), "--max_steps", "three"])
    assert wrong_type.returncode == 2 and "argument --max_steps" in wrong_type.stderr
    no_data = seven_b_flags(tiny_model_dir, tmp_path / "missing.json", tmp_path / "out2")
    missing = run_module("train_mem", no_data)
    assert missing.returncode == 1 and "missing.json" in missing.stderr


def test_train_qlora_runs_its_scripts_flags_and_resumes_from_an_adapter(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "camel.jsonl", repetitive_dataset(300), jsonl=True)
    out = tmp_path / "out"
    first = run_module("train_qlora", qlora_flags(tiny_model_dir, data, out))
    result = result_of(first)
    assert result["steps"] == 4
    # --max_samples 200: 196 train + 4 eval, then --max_eval_samples 3
    assert result["total_samples"] == 199
    assert "196 training and 3 evaluation conversations" in first.stdout
    adapter = json.loads((out / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 8

    # A run that stopped after its checkpoint at step 2, resumed the original's way.
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    (out / "result.json").unlink()
    checkpoint = out / "checkpoints" / "checkpoint-2"
    resume = ["--checkpoint_path", str(checkpoint), "--load_weights", "False"]
    again = run_module("train_qlora", qlora_flags(tiny_model_dir, data, out, *resume))
    assert result_of(again)["steps"] == 4
    assert f"restarting from the adapter weights in {checkpoint}" in again.stdout
    assert "resuming from checkpoint-2 (step 2)" in again.stdout
    first_losses, resumed = losses(first.stdout), losses(again.stdout)
    assert sorted(resumed) == [3, 4]
    assert {step: first_losses[step] for step in resumed} == resumed

    bad = run_module(
        "train_qlora", qlora_flags(tiny_model_dir, data, tmp_path / "o2", "--checkpoint_path", "x")
    )
    assert bad.returncode == 1 and "checkpoint_path x: no adapter weights there" in bad.stderr


def test_load_weights_false_keeps_the_loaded_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        "transformers.Trainer._load_from_checkpoint",
        lambda self, path, model=None: calls.append(path),
    )
    trainer = CamelTrainer.__new__(CamelTrainer)
    trainer.load_weights = False
    trainer._load_from_checkpoint("ckpt")
    trainer.load_weights = True
    trainer._load_from_checkpoint("ckpt")
    assert calls == ["ckpt"]


@pytest.fixture(scope="module")
def wide_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's tokenizer on a wider LLaMA: 3.4 MB of weights even in 4 bits."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("models") / "wide-llama"
    config = LlamaConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size = 256, 4096
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def test_max_memory_mb_caps_the_loaded_model(wide_model_dir: Path) -> None:
    hp = Hyperparameters(max_memory_mb=1, lora_r=4).resolved("qlora")
    with pytest.raises(TrainingError, match="does not fit in max_memory_MB=1"):
        load_model(str(wide_model_dir), "qlora", hp, "fp32", "sdpa")
    hp = hp.model_copy(update={"max_memory_mb": 100})
    model = load_model(str(wide_model_dir), "qlora", hp, "fp32", "sdpa")
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.parametrize("jsonl", [False, True])
def test_lazy_tokenization_gives_the_eager_samples(
    tiny_model_dir: Path, tmp_path: Path, jsonl: bool
) -> None:
    records = repetitive_dataset(120)
    records[5] = conversation(5, "a question with no answer")  # cannot be masked: counted
    data = write_dataset(tmp_path / "d.json", records, jsonl=jsonl)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = training_conversation("vicuna_v1.1", tokenizer)

    def prepare(lazy: bool, **caps: int) -> PreparedData:
        options = DataOptions(lazy=lazy, scratch_dir=tmp_path, **caps)
        return prepare_data(data, None, 0.1, 3, template, tokenizer, 128, options=options)

    for caps in ({}, {"max_samples": 50, "max_eval_samples": 2}):
        eager, lazy = prepare(False, **caps), prepare(True, **caps)
        assert type(lazy.train).__name__ == "LazySamples"
        assert list(lazy.train) == list(eager.train) and list(lazy.eval) == list(eager.eval)
        assert (lazy.total_samples, lazy.lost, lazy.trained_tokens) == (
            eager.total_samples, eager.lost, eager.trained_tokens,
        )  # fmt: skip
        packed_eager = PackedRows(eager.train, 128)
        packed_lazy = PackedRows(lazy.train, 128, lazy.train_lengths)
        assert packed_lazy.rows == packed_eager.rows
        assert [packed_lazy[i] for i in range(len(packed_lazy))] == [
            packed_eager[i] for i in range(len(packed_eager))
        ]
    assert (len(eager.train), len(eager.eval)) == (45, 2)
    assert not list(tmp_path.glob("tmp*"))  # the JSON Lines copy has no name


def test_warmup_given_in_steps_reaches_the_trainer_as_steps(tmp_path: Path) -> None:
    flags = [f for f in seven_b_flags(Path("m"), Path("d.json"), tmp_path)]
    at = flags.index("--warmup_ratio")
    del flags[at : at + 2]
    request, options, *_ = to_job([*flags, "--warmup_steps", "10"], False)
    assert request.hyperparameters.warmup_ratio == 0.0
    assert options.trainer_arguments["warmup_steps"] == 10
    request, options, *_ = to_job([*flags, "--warmup_steps", "0.1"], False)
    assert request.hyperparameters.warmup_ratio == 0.1
    assert "warmup_steps" not in options.trainer_arguments
