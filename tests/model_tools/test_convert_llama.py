"""Meta LLaMA checkpoint -> HF: a tiny fake checkpoint, checked against Meta's own forward pass."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch

from services.model_tools import convert_llama
from services.model_tools.convert_llama import main

PARAMS = {"dim": 64, "n_layers": 2, "n_heads": 4, "multiple_of": 32, "norm_eps": 1e-5}
HIDDEN = 192  # 32 * ceil(int(8 * 64 / 3) / 32)


def tiny_sentencepiece(path: Path) -> int:
    spm = pytest.importorskip("sentencepiece")
    corpus = ["The quick brown fox jumps over the lazy dog.", "CAMEL agents play roles."] * 50
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=48,
        model_type="bpe",
        bos_id=1,
        eos_id=2,
        unk_id=0,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    return 48


def meta_weights(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Full (unsharded) weights under Meta's names."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.2

    dim = PARAMS["dim"]
    weights = {"tok_embeddings.weight": rand(vocab, dim), "output.weight": rand(vocab, dim)}
    weights["norm.weight"] = 1 + rand(dim)
    for i in range(PARAMS["n_layers"]):
        p = f"layers.{i}."
        for name in ("wq", "wk", "wv", "wo"):
            weights[f"{p}attention.{name}.weight"] = rand(dim, dim)
        weights[f"{p}feed_forward.w1.weight"] = rand(HIDDEN, dim)
        weights[f"{p}feed_forward.w2.weight"] = rand(dim, HIDDEN)
        weights[f"{p}feed_forward.w3.weight"] = rand(HIDDEN, dim)
        weights[f"{p}attention_norm.weight"] = 1 + rand(dim)
        weights[f"{p}ffn_norm.weight"] = 1 + rand(dim)
    return weights


def shard(weights: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """Split as Meta's model-parallel layers do (column-parallel on 0, row-parallel on 1)."""
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for name, tensor in weights.items():
        if "norm" in name:
            parts = [tensor] * n
        elif any(k in name for k in ("wo.", "w2.", "tok_embeddings")):
            parts = list(tensor.chunk(n, dim=1))
        else:
            parts = list(tensor.chunk(n, dim=0))
        for s, part in zip(shards, parts, strict=True):
            s[name] = part.clone()
    return shards


def meta_forward(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Meta's LLaMA forward pass (interleaved complex rotary), for one sequence."""
    dim, n_heads, eps = PARAMS["dim"], PARAMS["n_heads"], PARAMS["norm_eps"]
    head_dim, seq = dim // n_heads, tokens.shape[0]

    def norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    freqs = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    cis = torch.polar(torch.ones(seq, head_dim // 2), torch.outer(torch.arange(seq).float(), freqs))

    def rotate(x: torch.Tensor) -> torch.Tensor:
        pairs = torch.view_as_complex(x.reshape(seq, n_heads, head_dim // 2, 2))
        return torch.view_as_real(pairs * cis[:, None, :]).flatten(2)

    mask = torch.full((seq, seq), float("-inf")).triu(1)
    h = w["tok_embeddings.weight"][tokens]
    for i in range(PARAMS["n_layers"]):
        p = f"layers.{i}."
        x = norm(h, w[f"{p}attention_norm.weight"])
        q = rotate((x @ w[f"{p}attention.wq.weight"].T).view(seq, n_heads, head_dim))
        k = rotate((x @ w[f"{p}attention.wk.weight"].T).view(seq, n_heads, head_dim))
        v = (x @ w[f"{p}attention.wv.weight"].T).view(seq, n_heads, head_dim)
        scores = q.transpose(0, 1) @ k.transpose(0, 1).transpose(1, 2) / math.sqrt(head_dim)
        out = (scores + mask).softmax(-1) @ v.transpose(0, 1)
        h = h + out.transpose(0, 1).reshape(seq, dim) @ w[f"{p}attention.wo.weight"].T
        x = norm(h, w[f"{p}ffn_norm.weight"])
        gate = torch.nn.functional.silu(x @ w[f"{p}feed_forward.w1.weight"].T)
        h = h + (gate * (x @ w[f"{p}feed_forward.w3.weight"].T)) @ w[f"{p}feed_forward.w2.weight"].T
    return norm(h, w["norm.weight"]) @ w["output.weight"].T


@pytest.fixture
def meta_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    root = tmp_path / "llama"
    root.mkdir()
    vocab = tiny_sentencepiece(root / "tokenizer.model")
    weights = meta_weights(vocab)
    (root / "13B").mkdir()
    (root / "13B" / "params.json").write_text(json.dumps({**PARAMS, "vocab_size": -1}))
    for n, part in enumerate(shard(weights, 2)):
        torch.save(part, root / "13B" / f"consolidated.{n:02d}.pth")
    return root, weights


def test_the_converted_model_computes_metas_logits(
    meta_checkpoint: tuple[Path, dict], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer, LlamaForCausalLM

    root, weights = meta_checkpoint
    out = tmp_path / "hf"
    assert main(["--input-dir", str(root), "--model-size", "13B", "--output-dir", str(out),
                 "--dtype", "float32"]) == 0  # fmt: skip
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert model.config.intermediate_size == HIDDEN
    tokens = torch.tensor([1, 5, 9, 17, 3, 40, 22, 7])
    with torch.no_grad():
        logits = model(tokens[None]).logits[0]
    torch.testing.assert_close(logits, meta_forward(weights, tokens), atol=1e-4, rtol=1e-4)

    import sentencepiece as spm

    text = "The lazy fox plays roles."
    ids = spm.SentencePieceProcessor(model_file=str(root / "tokenizer.model")).encode(text)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids


def test_default_dtype_is_float16_and_tokenizer_only_writes_no_weights(
    meta_checkpoint: tuple[Path, dict], tmp_path: Path
) -> None:
    from transformers import AutoConfig

    root, _ = meta_checkpoint
    half = tmp_path / "half"
    convert_llama.convert(root, "13B", half)
    assert str(AutoConfig.from_pretrained(half).dtype).endswith("float16")
    tok = tmp_path / "tok"
    assert main(["--input-dir", str(root), "--model-size", "tokenizer_only",
                 "--output-dir", str(tok)]) == 0  # fmt: skip
    assert (tok / "tokenizer_config.json").exists()
    assert not list(tok.glob("*.safetensors"))


def test_a_wrong_shard_count_is_refused(
    meta_checkpoint: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, _ = meta_checkpoint
    (root / "13B").rename(root / "7B")
    assert main(["--input-dir", str(root), "--model-size", "7B", "--output-dir",
                 str(tmp_path / "x")]) == 2  # fmt: skip
    assert "7B has 1" in capsys.readouterr().err
