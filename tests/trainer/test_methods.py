"""Each method trains: loss drops; LoRA/QLoRA checkpoints hold the adapter, not the base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from services.trainer.checkpoints import COMPLETE_MARKER, is_adapter_only, list_checkpoints
from services.trainer.job import run_training
from tests.trainer.builders import EventLog, repetitive_dataset, tiny_request, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    return write_dataset(folder / "chats.json", repetitive_dataset())


@pytest.mark.parametrize(
    ("method", "learning_rate"), [("full", 5e-3), ("lora", 1e-2), ("qlora", 1e-2)]
)
def test_method_trains_and_saves(
    learnable_model_dir: Path, dataset: Path, tmp_path: Path, method: str, learning_rate: float
) -> None:
    events = EventLog()
    request = tiny_request(
        learnable_model_dir,
        dataset,
        method=method,
        validation_split=0.1,
        hyperparameters={"max_steps": 10, "learning_rate": learning_rate, "eval_steps": 5},
    )
    result = run_training(request, tmp_path, on_event=events)

    assert result["status"] == "succeeded" and result["steps"] == 10
    losses = events.losses()
    assert sorted(losses) == list(range(1, 11))
    assert losses[10] < 0.5 * losses[1], losses
    assert result["metrics"]["eval_loss"] > 0
    assert result["trained_tokens"] > 0 and result["total_samples"] == 48
    assert any("eval_loss" in e["data"] for e in events.of_type("metrics"))

    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert [step for step, _ in checkpoints] == [4, 8]  # every save_steps; final/ ends it
    assert [e["step"] for e in events.of_type("checkpoint")] == [4, 8]
    for _, path in checkpoints:
        assert (path / COMPLETE_MARKER).is_file()
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
            assert (path / name).is_file(), name
        assert is_adapter_only(path) == (method != "full")

    final = Path(result["final_dir"])
    assert final == tmp_path / "final"
    assert (final / "tokenizer.json").is_file()
    summary = json.loads((final / "camel_training.json").read_text())
    assert summary["method"] == method and summary["template"] == "vicuna_v1.1"
    if method == "full":
        assert (final / "model.safetensors").is_file()
    else:
        assert is_adapter_only(final)
        with safe_open(final / "adapter_model.safetensors", "pt") as weights:
            names = list(weights.keys())
        assert names and all("lora_" in name for name in names)
        assert not any("lm_head" in name for name in names)  # the head is not adapted
        config = json.loads((final / "adapter_config.json").read_text())
        assert {name.rsplit(".", 1)[-1] for name in config["target_modules"]} == {
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
        }  # fmt: skip
    assert list(tmp_path.glob("tensorboard/events.out.tfevents.*"))
    assert json.loads((tmp_path / "result.json").read_text()) == result


def test_qlora_uses_the_published_recipe(tiny_model_dir: Path, dataset: Path) -> None:
    from bitsandbytes.nn import Linear4bit

    from services.trainer.model_setup import load_model

    request = tiny_request(tiny_model_dir, dataset, method="qlora")
    hp = request.hyperparameters.resolved("qlora")
    assert (hp.lora_r, hp.lora_alpha, hp.max_grad_norm) == (64, 16, 0.3)
    model = load_model(str(tiny_model_dir), "qlora", hp, "fp32", "sdpa")
    quantized = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert len(quantized) == 14  # 7 linear layers x 2 decoder layers; the head stays 16/32-bit
    state = quantized[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # double quantization
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_packing_off_batches_by_length(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    request = tiny_request(
        tiny_model_dir, dataset, hyperparameters={"packing": False, "max_steps": 3}
    )
    result = run_training(request, tmp_path)
    assert result["status"] == "succeeded" and result["steps"] == 3


def test_chat_template_rendering_trains(
    tiny_model_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    events = EventLog()
    request = tiny_request(
        tiny_model_dir, dataset, template="auto", hyperparameters={"max_steps": 2}
    )
    run_training(request, tmp_path, on_event=events)
    assert any("chat_template template" in m for m in events.messages("info"))
