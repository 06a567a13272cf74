"""Convert an original Meta LLaMA checkpoint to Hugging Face format.

``python -m services.model_tools.convert_llama --input-dir DIR --model-size 7B|13B|30B|65B|
tokenizer_only --output-dir OUT``. ``DIR`` holds ``tokenizer.model`` and ``<size>/`` with
``params.json`` and ``consolidated.NN.pth`` (7B: 1 shard, 13B: 2, 30B: 4, 65B: 8).

The conversion script that transformers shipped is used when the installed transformers has one
(``--converter auto``); transformers 5 dropped it, and then this module's own port does the work.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared.cli import exit_status

log = logging.getLogger(__name__)

NUM_SHARDS = {"7B": 1, "13B": 2, "30B": 4, "65B": 8}
TOKENIZER_ONLY = "tokenizer_only"
DTYPES = ("float16", "bfloat16", "float32")


class ConversionError(Exception):
    """The input is not a convertible Meta checkpoint; the message says why."""


def permute_rotary(weight: Any, n_heads: int, rows: int, cols: int) -> Any:
    """Meta rotates interleaved pairs (0,1),(2,3)...; HF rotates halves: reorder each head's
    rows so that HF's rotate_half computes the same rotation."""
    return weight.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def _load_shards(folder: Path, model_size: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import torch

    params_file = folder / "params.json"
    if not params_file.is_file():
        raise ConversionError(f"{params_file} is missing")
    shards = sorted(folder.glob("consolidated.*.pth"))
    expected = NUM_SHARDS[model_size]
    if len(shards) != expected:
        raise ConversionError(
            f"{folder} has {len(shards)} consolidated.NN.pth shards; {model_size} has {expected}"
        )
    params = json.loads(params_file.read_text())
    states = [torch.load(path, map_location="cpu", weights_only=True) for path in shards]
    return params, states


def merge_state_dict(params: dict[str, Any], states: list[dict[str, Any]]) -> dict[str, Any]:
    """HF parameter names -> tensors, shards merged the way Meta split them (column-parallel
    layers along dim 0, row-parallel along dim 1, embeddings along dim 1, norms replicated)."""
    import torch

    def cat(key: str, axis: int) -> Any:
        parts = [state[key] for state in states]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=axis)

    dim, n_heads = params["dim"], params["n_heads"]
    n_kv_heads = params.get("n_kv_heads") or n_heads
    kv_dim = dim // n_heads * n_kv_heads
    merged: dict[str, Any] = {}
    for i in range(params["n_layers"]):
        meta, hf = f"layers.{i}.", f"model.layers.{i}."
        merged[f"{hf}self_attn.q_proj.weight"] = permute_rotary(
            cat(f"{meta}attention.wq.weight", 0), n_heads, dim, dim
        )
        merged[f"{hf}self_attn.k_proj.weight"] = permute_rotary(
            cat(f"{meta}attention.wk.weight", 0), n_kv_heads, kv_dim, dim
        )
        merged[f"{hf}self_attn.v_proj.weight"] = cat(f"{meta}attention.wv.weight", 0)
        merged[f"{hf}self_attn.o_proj.weight"] = cat(f"{meta}attention.wo.weight", 1)
        merged[f"{hf}mlp.gate_proj.weight"] = cat(f"{meta}feed_forward.w1.weight", 0)
        merged[f"{hf}mlp.down_proj.weight"] = cat(f"{meta}feed_forward.w2.weight", 1)
        merged[f"{hf}mlp.up_proj.weight"] = cat(f"{meta}feed_forward.w3.weight", 0)
        merged[f"{hf}input_layernorm.weight"] = states[0][f"{meta}attention_norm.weight"]
        merged[f"{hf}post_attention_layernorm.weight"] = states[0][f"{meta}ffn_norm.weight"]
    merged["model.embed_tokens.weight"] = cat("tok_embeddings.weight", 1)
    merged["model.norm.weight"] = states[0]["norm.weight"]
    merged["lm_head.weight"] = cat("output.weight", 0)
    return merged


def llama_config(params: dict[str, Any], merged: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=params["dim"],
        # From the weights rather than the multiple_of formula: exact for every variant.
        intermediate_size=merged["model.layers.0.mlp.gate_proj.weight"].shape[0],
        num_attention_heads=params["n_heads"],
        num_key_value_heads=params.get("n_kv_heads") or params["n_heads"],
        num_hidden_layers=params["n_layers"],
        rms_norm_eps=params["norm_eps"],
        vocab_size=merged["model.embed_tokens.weight"].shape[0],
        max_position_embeddings=params.get("max_seq_len", 2048),
        rope_theta=float(params.get("rope_theta", 10000.0)),
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )


def write_model(input_dir: Path, model_size: str, output_dir: Path, dtype: str) -> None:
    import torch
    from transformers import LlamaForCausalLM

    params, states = _load_shards(input_dir / model_size, model_size)
    merged = merge_state_dict(params, states)
    del states
    torch_dtype = getattr(torch, dtype)
    merged = {name: tensor.to(torch_dtype) for name, tensor in merged.items()}
    config = llama_config(params, merged)
    config.dtype = torch_dtype
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(merged, strict=True, assign=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    log.info("event=llama_converted size=%s output=%s", model_size, output_dir)


def write_tokenizer(tokenizer_model: Path, output_dir: Path) -> None:
    from transformers import LlamaTokenizer

    if not tokenizer_model.is_file():
        raise ConversionError(f"{tokenizer_model} is missing")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(tokenizer_model, Path(tmp) / "tokenizer.model")
        tokenizer = LlamaTokenizer.from_pretrained(tmp)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(output_dir)


def upstream_converter() -> Any | None:
    """transformers' own conversion module, if this transformers still ships one."""
    try:
        from transformers.models.llama import convert_llama_weights_to_hf
    except ImportError:
        return None
    return convert_llama_weights_to_hf


def _convert_upstream(module: Any, input_dir: Path, model_size: str, output_dir: Path) -> bool:
    """Best effort across the script's versions; False: its signature is not one we know."""
    write = inspect.signature(module.write_model).parameters
    if not {"model_path", "input_base_path", "model_size"} <= set(write):
        return False
    if model_size != TOKENIZER_ONLY:
        # Before transformers 4.36 input_base_path was the size folder; later the input root.
        source = input_dir / model_size
        base = source if (source / "params.json").exists() else input_dir
        module.write_model(
            model_path=str(output_dir), input_base_path=str(base), model_size=model_size
        )
    module.write_tokenizer(str(output_dir), str(input_dir / "tokenizer.model"))
    return True


def convert(
    input_dir: Path,
    model_size: str,
    output_dir: Path,
    dtype: str = "float16",
    converter: str = "auto",
) -> str:
    """Returns which converter did the work: ``transformers`` or ``camel-chat``."""
    if model_size not in (*NUM_SHARDS, TOKENIZER_ONLY):
        raise ConversionError(f"model size {model_size!r}: one of {[*NUM_SHARDS, TOKENIZER_ONLY]}")
    upstream = upstream_converter() if converter == "auto" else None
    fits = upstream is not None and dtype == "float16"
    if fits and _convert_upstream(upstream, input_dir, model_size, output_dir):
        return "transformers"
    if model_size != TOKENIZER_ONLY:
        write_model(input_dir, model_size, output_dir, dtype)
    write_tokenizer(input_dir / "tokenizer.model", output_dir)
    return "camel-chat"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-dir", "--input_dir", type=Path, required=True)
    parser.add_argument(
        "--model-size", "--model_size", required=True, choices=[*NUM_SHARDS, TOKENIZER_ONLY]
    )
    parser.add_argument("--output-dir", "--output_dir", type=Path, required=True)
    parser.add_argument("--dtype", default="float16", choices=DTYPES)
    parser.add_argument(
        "--converter",
        default="auto",
        choices=["auto", "camel-chat"],
        help="auto: transformers' script when installed (float16 only), else ours",
    )
    args = parser.parse_args(argv)

    def run() -> str:
        used = convert(args.input_dir, args.model_size, args.output_dir, args.dtype, args.converter)
        return f"converted {args.model_size} into {args.output_dir} (converter: {used})"

    return exit_status(run, ConversionError)


if __name__ == "__main__":
    sys.exit(main())
