"""GGUF export: written files load back with transformers' GGUF loader with the source's logits,
tokenizer and chat template; bad input is refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.model_tools import to_gguf

PROMPT = "Hello! What is the capital of France? 1234 ça va 🙂"
# max |logit difference| allowed against the float32 source, per export type
TOLERANCE = {"f16": 5e-3, "q8_0": 5e-2}


def _load_gguf(path: Path) -> tuple[torch.nn.Module, object]:
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_export_loads_back_with_the_source_logits(
    tiny_model_dir: Path, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / f"tiny-{kind}.gguf"
    assert to_gguf.main(["--model-path", str(tiny_model_dir), "--out", str(out),
                         "--type", kind]) == 0  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left
    model, tokenizer = _load_gguf(out)
    source = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    source_tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenizer(PROMPT).input_ids == source_tokenizer(PROMPT).input_ids
    assert tokenizer.chat_template == source_tokenizer.chat_template
    assert tokenizer.eos_token == source_tokenizer.eos_token
    ids = source_tokenizer(PROMPT, return_tensors="pt").input_ids
    difference = (_logits(model, ids) - _logits(source, ids)).abs().max().item()
    assert difference < TOLERANCE[kind]


def test_q8_0_is_smaller_than_f16(tiny_model_dir: Path, tmp_path: Path) -> None:
    sizes = {}
    for kind in ("f16", "q8_0"):
        sizes[kind] = to_gguf.export(tiny_model_dir, tmp_path / f"{kind}.gguf", kind).stat().st_size
    assert sizes["q8_0"] < sizes["f16"]


def test_unsupported_architecture_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    source = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(
        source
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = to_gguf.main(["--model-path", str(source), "--out", str(out_dir / "x.gguf")])
    assert code == 2
    assert "unsupported architecture 'gpt2'" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []


def test_a_failure_midway_leaves_no_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A model whose weights do not match its config fails while writing; no partial file stays."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in tiny_model_dir.iterdir():
        (broken / item.name).symlink_to(item)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (broken / "config.json").unlink()
    (broken / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 1}))
    out_dir = tmp_path / "out"
    with pytest.raises(to_gguf.ExportError, match="has no GGUF name"):
        to_gguf.export(broken, out_dir / "x.gguf")
    assert list(out_dir.iterdir()) == []


def test_missing_model_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = to_gguf.main(["--model-path", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_default_model_chats_from_its_gguf(default_model_dir: Path, tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct exported to f16 and reloaded answers a chat as the source does."""
    out = tmp_path / "smollm2-f16.gguf"
    to_gguf.export(default_model_dir, out, "f16")
    model, tokenizer = _load_gguf(out)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    source = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32).eval()
    replies = []
    for candidate in (model, source):
        with torch.no_grad():
            generated = candidate.generate(ids, max_new_tokens=16, do_sample=False)
        replies.append(tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True))
    assert "Paris" in replies[0]
    assert replies[0] == replies[1]
