"""Half-precision rewrite and delta weights (make, apply, exactness) on tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.model_tools import delta as delta_tool
from services.model_tools import to_half
from tests.support import build_tiny_llama


def _params(path: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    return {name: p.detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_to_half_keeps_weights_and_tokenizer(
    tiny_model_dir: Path, tmp_path: Path, dtype: str
) -> None:
    out = tmp_path / dtype
    assert to_half.main(["--in-checkpoint", str(tiny_model_dir), "--out-checkpoint", str(out),
                         "--dtype", dtype]) == 0  # fmt: skip
    source, half = _params(tiny_model_dir), _params(out)
    assert {p.dtype for p in half.values()} == {getattr(torch, dtype)}
    for name, value in source.items():
        assert torch.equal(half[name], value.to(getattr(torch, dtype)))
    text = "Hello! What is the capital of France?"
    assert AutoTokenizer.from_pretrained(out)(text) == AutoTokenizer.from_pretrained(
        tiny_model_dir
    )(text)


@pytest.fixture(scope="module")
def half_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A base and a 'fine-tuned' target, both fp16, whose weights differ everywhere."""
    root = tmp_path_factory.mktemp("delta")
    pair = []
    for name, seed in (("base", 0), ("target", 1)):
        full = build_tiny_llama(root / f"{name}-fp32", seed=seed)
        to_half.to_half(full, root / name, "float16")
        pair.append(root / name)
    return pair[0], pair[1]


def test_base_plus_delta_reproduces_the_target_exactly(
    half_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    base, target = half_pair
    delta, rebuilt = tmp_path / "delta", tmp_path / "rebuilt"
    assert delta_tool.main(["make", "--base", str(base), "--target", str(target),
                            "--delta", str(delta)]) == 0  # fmt: skip
    delta_params, target_params = _params(delta), _params(target)
    assert {p.dtype for p in delta_params.values()} == {torch.float32}
    base_params = _params(base)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(delta_params[name], target_params[name].float() - base_params[name].float())
    assert delta_tool.main(["apply", "--base", str(base), "--delta", str(delta),
                            "--target", str(rebuilt)]) == 0  # fmt: skip
    rebuilt_params = _params(rebuilt)
    assert rebuilt_params.keys() == target_params.keys()
    for key, value in target_params.items():
        assert rebuilt_params[key].dtype == torch.float16
        assert torch.equal(rebuilt_params[key], value), key
    assert (rebuilt / "tokenizer.json").exists()


def test_an_inexact_delta_is_not_saved(
    half_pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, target = half_pair
    # A delta as narrow as the weights (the original's fp16 subtraction) loses bits.
    monkeypatch.setattr(delta_tool, "_wider", lambda dtype: torch.float16)
    delta = tmp_path / "delta"
    assert delta_tool.main(["make", "--base", str(base), "--target", str(target),
                            "--delta", str(delta)]) == 1  # fmt: skip
    assert not delta.exists()


def test_mismatched_models_are_refused(
    half_pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base, _ = half_pair
    other = tmp_path / "other"
    model = AutoModelForCausalLM.from_pretrained(base)
    model.resize_token_embeddings(model.config.vocab_size + 8)
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(base).save_pretrained(other)
    assert delta_tool.main(["make", "--base", str(base), "--target", str(other),
                            "--delta", str(tmp_path / "d")]) == 2  # fmt: skip
    assert "model.embed_tokens.weight: shape" in capsys.readouterr().err
