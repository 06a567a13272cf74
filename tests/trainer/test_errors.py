"""Request validation and clear failures: nothing half-done is left looking finished."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from services.trainer import job
from services.trainer.job import TrainingError, run_training, validate_request
from tests.trainer.builders import repetitive_dataset, tiny_request, write_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "chats.json", repetitive_dataset(16))


def fields(request) -> list[str]:
    return [field for field, _ in validate_request(request)]


def test_valid_request_has_no_problems(tiny_model_dir: Path, dataset: Path) -> None:
    assert validate_request(tiny_request(tiny_model_dir, dataset)) == []


def test_max_length_beyond_the_model_context(tiny_model_dir: Path, dataset: Path) -> None:
    request = tiny_request(tiny_model_dir, dataset, hyperparameters={"max_length": 512})
    [(field, message)] = validate_request(request)
    assert field == "hyperparameters.max_length" and "256" in message


def test_lora_settings_on_a_full_finetune(tiny_model_dir: Path, dataset: Path) -> None:
    request = tiny_request(
        tiny_model_dir,
        dataset,
        method="full",
        hyperparameters={"lora_target_modules": ["q_proj"], "lora_alpha": 32, "bits": 8},
    )
    assert fields(request) == [
        "hyperparameters.lora_target_modules",
        "hyperparameters.lora_alpha",
        "hyperparameters.bits",
    ]


def test_missing_model_folder_and_missing_chat_template(tmp_path: Path, dataset: Path) -> None:
    request = tiny_request(tmp_path / "nowhere", dataset)
    assert fields(request) == ["model"]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    (bare / "tokenizer_config.json").write_text("{}")
    request = tiny_request(bare, dataset, template="chat_template")
    assert fields(request) == ["template"]


def test_run_training_refuses_an_invalid_request(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(TrainingError, match=r"model: base model folder .* not found"):
        run_training(tiny_request(tmp_path / "nowhere", dataset), tmp_path / "out")
    assert not (tmp_path / "out" / "final").exists()


def test_unloadable_model_folder(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TrainingError, match="cannot load base model"):
        run_training(tiny_request(broken, dataset), tmp_path / "out")
    assert not (tmp_path / "out" / "final").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot read dataset file"),
        ("", "holds no conversations"),
        ("[]", "holds no conversations"),
        ("{not json", "not JSON or JSON lines"),
    ],
)
def test_unusable_dataset_files(
    tiny_model_dir: Path, tmp_path: Path, content: str | None, match: str
) -> None:
    path = tmp_path / "data.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TrainingError, match=match):
        run_training(tiny_request(tiny_model_dir, path), tmp_path / "out")


def test_out_of_memory_becomes_a_hint(
    tiny_model_dir: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(self, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(job.CamelTrainer, "train", exhausted)
    hint = r"out of memory at step 0\. .*smaller batch_size.*qlora.*gradient_checkpointing"
    with pytest.raises(TrainingError, match=hint):
        run_training(tiny_request(tiny_model_dir, dataset), tmp_path)
    assert not (tmp_path / "final").exists()


def test_failed_final_save_leaves_no_final_folder(
    tiny_model_dir: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self, output_dir=None, _internal_call=False):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "adapter_model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    request = tiny_request(tiny_model_dir, dataset, hyperparameters={"max_steps": 1})
    monkeypatch.setattr(job.CamelTrainer, "save_model", disk_full)
    with pytest.raises(OSError):
        run_training(request, tmp_path)
    assert not (tmp_path / "final").exists()
    assert not (tmp_path / ".final.partial").exists()
    assert not (tmp_path / "result.json").exists()
