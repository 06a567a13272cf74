"""merge_lora in-process: the merged folder, its verification, atomic publishing, and errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.merger import merge as merge_module
from services.merger.errors import MergeCancelled, MergeError
from services.merger.merge import MergeOptions, merge_lora
from services.merger.verify import probe_batch, relative_error
from tests.merger.builders import TEMPLATE, copy_folder, edit_json, make_adapter, make_base


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_merged_folder_loads_plainly_and_matches_base_plus_adapter(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    events: list[dict] = []
    target = tmp_path / "models" / "tiny-merged"
    result = merge_lora(tiny_model_dir, adapter_dir, target, on_progress=events.append)

    assert result["output_dir"] == str(target) and result["dtype"] == "fp32"
    assert result["verification"]["relative_error"] < 1e-4
    assert [e["phase"] for e in events] == list(merge_module.PHASES)
    assert left_in(target.parent) == ["tiny-merged"]  # no temporary folder left next to it
    assert {"config.json", "model.safetensors", "generation_config.json"} <= set(left_in(target))
    assert "adapter_config.json" not in left_in(target)

    ids = probe_batch(200)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    base_logits = logits(base, ids)
    reference = logits(PeftModel.from_pretrained(base, str(adapter_dir)), ids)
    reloaded = logits(AutoModelForCausalLM.from_pretrained(str(target)), ids)
    assert relative_error(reloaded, reference) < 1e-4
    assert relative_error(base_logits, reference) > 0.05  # the adapter does change the model

    tokenizer = AutoTokenizer.from_pretrained(str(target))
    assert len(tokenizer) == len(AutoTokenizer.from_pretrained(str(adapter_dir)))
    assert tokenizer.chat_template  # the tiny model's ChatML template came along
    summary = json.loads((target / "camel_training.json").read_text())
    assert summary["template"] == TEMPLATE and summary["adapter"] is False
    assert summary["merged"]["adapter"] == str(adapter_dir)


def test_dtype_option_and_auto_reads_the_base_config(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "bf16"
    result = merge_lora(tiny_model_dir, adapter_dir, target, MergeOptions(dtype="bf16"))
    assert result["dtype"] == "bf16"
    assert result["verification"]["relative_error"] < result["verification"]["tolerance"]
    with safe_open(str(target / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.self_attn.q_proj.weight").dtype == torch.bfloat16

    # auto: the base's own dtype, here the bf16 model just written (adapter included again).
    again = merge_lora(target, adapter_dir, tmp_path / "auto", MergeOptions(dtype="auto"))
    assert again["dtype"] == "bf16"


def test_large_models_are_saved_in_shards(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "sharded"
    merge_lora(tiny_model_dir, adapter_dir, target, MergeOptions(max_shard_size="200KB"))
    shards = sorted(p.name for p in target.glob("model-*.safetensors"))
    assert len(shards) >= 2, left_in(target)
    index = json.loads((target / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    unsharded = tmp_path / "whole"
    merge_lora(tiny_model_dir, adapter_dir, unsharded)
    ids = probe_batch(200)
    a = logits(AutoModelForCausalLM.from_pretrained(str(target)), ids)
    b = logits(AutoModelForCausalLM.from_pretrained(str(unsharded)), ids)
    assert torch.equal(a, b)


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes"
)
def test_a_qlora_adapter_merges_into_the_unquantized_base(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "qlora", quantized=True)
    target = tmp_path / "merged"
    result = merge_lora(tiny_model_dir, adapter, target)
    assert result["verification"]["relative_error"] < 1e-4
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config
    with safe_open(str(target / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.up_proj.weight").dtype == torch.float32


def test_a_hub_base_is_taken_from_the_hugging_face_cache(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's base may be a Hub id: the trainer's download is in the cache (offline here)."""
    from huggingface_hub import constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    copy_folder(tiny_model_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = merge_lora("acme/tiny-llama", adapter_dir, tmp_path / "merged")
    assert result["base_model"] == str(repo / "snapshots" / revision)
    with pytest.raises(MergeError, match=r"acme/missing is neither a local folder nor .*Hub"):
        merge_lora("acme/missing", adapter_dir, tmp_path / "other")


def test_a_failed_write_leaves_neither_target_nor_temporary_folder(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object) -> None:  # called after the weights and tokenizer are written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(merge_module, "_write_training_summary", disk_full)
    with pytest.raises(MergeError, match=r"could not write the merged model.*No space left"):
        merge_lora(tiny_model_dir, adapter_dir, tmp_path / "models" / "m")
    assert left_in(tmp_path / "models") == []


def test_overwrite_replaces_and_a_failed_overwrite_keeps_the_old_model(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "models" / "m"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("previous model")
    with pytest.raises(MergeError, match=r"already exists; pass overwrite"):
        merge_lora(tiny_model_dir, adapter_dir, target)

    monkeypatch.setattr(merge_module, "_write_training_summary", _raise_interrupt)
    with pytest.raises(KeyboardInterrupt):  # a cancel by signal, mid-write
        merge_lora(tiny_model_dir, adapter_dir, target, MergeOptions(overwrite=True))
    assert left_in(tmp_path / "models") == ["m"] and left_in(target) == ["old.txt"]

    monkeypatch.undo()
    merge_lora(tiny_model_dir, adapter_dir, target, MergeOptions(overwrite=True))
    assert left_in(tmp_path / "models") == ["m"]
    assert "old.txt" not in left_in(target) and (target / "config.json").is_file()


def _raise_interrupt(*args: object) -> None:
    raise KeyboardInterrupt


def test_should_stop_cancels_without_writing(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    seen: list[str] = []

    def stop_when_saving() -> bool:
        return "verify" in seen

    with pytest.raises(MergeCancelled):
        merge_lora(
            tiny_model_dir,
            adapter_dir,
            tmp_path / "models" / "m",
            on_progress=lambda e: seen.append(e["phase"]),
            should_stop=stop_when_saving,
        )
    assert seen[-1] == "verify"
    assert left_in(tmp_path / "models") == []


def test_a_merge_that_changes_the_model_fails_verification(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(merge_module, "_fold", lambda peft_model: peft_model.unload())
    with pytest.raises(MergeError, match=r"verification failed: .* relative error of"):
        merge_lora(tiny_model_dir, adapter_dir, tmp_path / "models" / "m")
    assert left_in(tmp_path / "models") == []


# Inputs the merge refuses, each with the message a user can act on.


def test_missing_files(tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MergeError, match=r"has no adapter_config.json .*full model"):
        merge_lora(tiny_model_dir, tiny_model_dir, tmp_path / "m")
    with pytest.raises(MergeError, match=r"adapter folder .* not found"):
        merge_lora(tiny_model_dir, tmp_path / "nowhere", tmp_path / "m")
    no_config = copy_folder(tiny_model_dir, tmp_path / "base")
    (no_config / "config.json").unlink()
    with pytest.raises(MergeError, match=r"has no config.json"):
        merge_lora(no_config, adapter_dir, tmp_path / "m")
    no_weights = copy_folder(adapter_dir, tmp_path / "adapter")
    (no_weights / "adapter_model.safetensors").unlink()
    with pytest.raises(MergeError, match=r"has no weights"):
        merge_lora(tiny_model_dir, no_weights, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_4bit_base_is_refused(tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path) -> None:
    base = copy_folder(tiny_model_dir, tmp_path / "base-4bit")
    quant = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    edit_json(base / "config.json", quantization_config=quant)
    with pytest.raises(MergeError, match=r"is 4-bit .*unquantized base"):
        merge_lora(base, adapter_dir, tmp_path / "m")


def _anonymous(adapter_dir: Path, folder: Path) -> Path:
    """The adapter with no record of its base (as if trained from a Hub id)."""
    adapter = copy_folder(adapter_dir, folder)
    edit_json(adapter / "adapter_config.json", base_model_name_or_path="someone/other-model")
    (adapter / "camel_training.json").unlink()
    return adapter


def test_an_adapter_of_another_base_is_refused(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    wider = make_base(tiny_model_dir, tmp_path / "wider", hidden_size=128, intermediate_size=256)
    # The adapter records its base folder: the configs are compared before loading anything.
    with pytest.raises(
        MergeError, match=r"hidden_size mismatch: .*hidden_size=64.*hidden_size=128"
    ):
        merge_lora(wider, adapter_dir, tmp_path / "m")
    # No usable record: the LoRA matrices' shapes against the loaded base's layers.
    anonymous = _anonymous(adapter_dir, tmp_path / "anonymous")
    shapes = r"shape mismatch: .* has input size \d+ in the base model but \d+ in the adapter"
    with pytest.raises(MergeError, match=shapes):
        merge_lora(wider, anonymous, tmp_path / "m")
    shallow = make_base(tiny_model_dir, tmp_path / "shallow", num_hidden_layers=1)
    with pytest.raises(MergeError, match=r"target module mismatch: .*model.layers.1"):
        merge_lora(shallow, anonymous, tmp_path / "m")
    small_vocab = make_base(tiny_model_dir, tmp_path / "small-vocab", vocab_size=100)
    with pytest.raises(MergeError, match=r"vocab size mismatch: the tokenizer has \d+ tokens"):
        merge_lora(small_vocab, anonymous, tmp_path / "m")
    other_class = copy_folder(adapter_dir, tmp_path / "mistral-adapter")
    edit_json(
        other_class / "adapter_config.json",
        auto_mapping={"base_model_class": "MistralForCausalLM", "parent_library": "x"},
    )
    with pytest.raises(MergeError, match=r"architecture mismatch: .*MistralForCausalLM"):
        merge_lora(tiny_model_dir, other_class, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_bad_options(tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MergeError, match=r"max shard size 'lots'"):
        merge_lora(tiny_model_dir, adapter_dir, tmp_path / "m", MergeOptions(max_shard_size="lots"))
    with pytest.raises(MergeError, match=r"unknown dtype 'int8'"):
        merge_lora(tiny_model_dir, adapter_dir, tmp_path / "m", MergeOptions(dtype="int8"))
