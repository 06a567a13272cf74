"""Model loading: dtypes, bitsandbytes 8/4-bit on CPU, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.model_worker.generation import generate_stream
from services.model_worker.loader import ModelLoadError, context_length, load_model
from shared.schemas import GenerateParams


def generate(loaded, max_new_tokens: int = 4) -> dict:
    params = GenerateParams(prompt="Hello", max_new_tokens=max_new_tokens, temperature=0)
    return list(
        generate_stream(loaded.model, loaded.tokenizer, params, context_len=loaded.context_len)
    )[-1]


def test_bfloat16_load(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert loaded.model.dtype == torch.bfloat16
    assert loaded.context_len == 256
    assert generate(loaded)["error_code"] == 0


@pytest.mark.parametrize("flag", ["load_8bit", "load_4bit"])
def test_bitsandbytes_quantized_load_generates(tiny_model_dir: Path, flag: str) -> None:
    import bitsandbytes as bnb

    loaded = load_model(str(tiny_model_dir), device="cpu", **{flag: True})
    layer_type = bnb.nn.Linear8bitLt if flag == "load_8bit" else bnb.nn.Linear4bit
    assert isinstance(loaded.model.model.layers[0].mlp.up_proj, layer_type)
    final = generate(loaded)
    assert final["error_code"] == 0
    assert final["usage"]["completion_tokens"] >= 1


def test_missing_folder_and_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "absent"))
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(str(tmp_path))


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not load model 'camel-ai/not-a-model'"):
        load_model("camel-ai/not-a-model", device="cpu")


def test_both_quantizations_at_once_are_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="one of"):
        load_model(str(tiny_model_dir), load_8bit=True, load_4bit=True)


def test_context_length_from_config() -> None:
    class Config:
        max_position_embeddings = 4096

    assert context_length(Config()) == 4096
    assert context_length(object()) == 2048


def test_auto_dtype_on_cpu_is_bfloat16_only_where_the_cpu_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.model_worker import loader

    assert loader.cpu_has_fast_bf16({"avx512f", "avx512_bf16"})
    assert loader.cpu_has_fast_bf16({"amx_tile", "amx_bf16"})
    assert not loader.cpu_has_fast_bf16({"avx2", "avx512f"})
    monkeypatch.setattr(loader, "cpu_flags", lambda: {"avx2"})
    assert loader.resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(loader, "cpu_flags", lambda: {"avx512_bf16"})
    assert loader.resolve_dtype("auto", "cpu") == torch.bfloat16
    assert loader.resolve_dtype("float32", "cpu") == torch.float32


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path) -> None:
    from services.model_worker.loader import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 sse\n")
    assert cpu_flags(info) == {"fpu", "avx512_bf16", "sse"}
    assert cpu_flags(tmp_path / "absent") == set()
