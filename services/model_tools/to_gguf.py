"""Export a LLaMA-architecture Hugging Face model to one GGUF file for llama.cpp, GPT4All and
other GGML runtimes: ``python -m services.model_tools.to_gguf --model-path M --out F.gguf
[--type f16|q8_0]``.

Weights are read one tensor at a time (safetensors) and spooled to a temporary file, so memory
stays near one tensor; the GGUF is written under a temporary name beside ``--out`` and renamed
only once complete, so a failed export leaves nothing behind. The tokenizer (byte-level BPE as in
SmolLM2/LLaMA-3, or LLaMA's sentencepiece BPE), its special ids and its chat template go into the
file's metadata, so transformers' ``from_pretrained(dir, gguf_file=...)`` and llama.cpp rebuild it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shared.cli import exit_status

SUPPORTED_MODEL_TYPES = ("llama",)
TYPES = ("f16", "q8_0")
# llama.cpp's token types (gguf.TokenType)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6


class ExportError(Exception):
    """The model cannot be exported (not a model folder, unsupported architecture or tokenizer)."""


def read_config(model_path: Path) -> dict[str, Any]:
    """The model's config.json, refused unless it describes a plain LLaMA decoder."""
    config_file = model_path / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{model_path} is not a model folder (no config.json)")
    config = json.loads(config_file.read_text())
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(
            f"unsupported architecture {model_type!r} "
            f"({', '.join(config.get('architectures') or [])}): "
            f"to_gguf exports {', '.join(SUPPORTED_MODEL_TYPES)} models only"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise ExportError(f"unsupported LLaMA variant: {flag} is true in config.json")
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type", "default")) not in ("default", None):
        raise ExportError(f"unsupported rope_scaling {scaling} (only plain RoPE is exported)")
    return config


def permute_for_ggml(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face stores q/k rows as two halves per head (rotate_half); llama.cpp's RoPE wants
    them interleaved. The inverse of transformers' ``_reverse_permute_weights``."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def iter_tensors(model_path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """``(hf_name, float32 array)`` one at a time from the safetensors shards, or from the model
    loaded whole when the checkpoint is in another format."""
    shards = sorted(model_path.glob("*.safetensors"))
    if shards:
        from safetensors import safe_open

        for shard in shards:
            with safe_open(str(shard), framework="pt") as reader:
                for name in reader.keys():  # noqa: SIM118 (not iterable itself)
                    yield name, reader.get_tensor(name).float().numpy()
        return
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="float32")
    for name, value in model.state_dict().items():
        yield name, value.detach().float().numpy()


def encode_tensor(
    name: str, data: np.ndarray, kind: str, config: dict[str, Any]
) -> tuple[np.ndarray, Any]:
    """The array to write and its GGML type: norms stay F32 (as llama.cpp keeps them), matrices
    become F16 or Q8_0 (F16 where a row is not a whole number of 32-value blocks)."""
    import gguf

    n_head = config["num_attention_heads"]
    if name.endswith("self_attn.q_proj.weight"):
        data = permute_for_ggml(data, n_head)
    elif name.endswith("self_attn.k_proj.weight"):
        data = permute_for_ggml(data, config.get("num_key_value_heads") or n_head)
    if data.ndim == 1:
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    if kind == "q8_0" and data.shape[-1] % block == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, qtype), qtype
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def add_model_metadata(writer: Any, config: dict[str, Any], name: str, kind: str) -> None:
    """The LLaMA hyper-parameters llama.cpp and transformers read back."""
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta")
    writer.add_rope_freq_base(float(theta or 10000.0))
    writer.add_vocab_size(config["vocab_size"])
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_type[kind])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def tokenizer_kind(tokenizer_json: dict[str, Any]) -> str:
    """``gpt2`` (byte-level BPE) or ``llama`` (sentencepiece BPE with byte fallback), the two
    vocabularies llama.cpp and transformers' GGUF loader rebuild for a LLaMA file."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportError(f"unsupported tokenizer model {model.get('type')!r} (BPE only)")
    if "ByteLevel" in json.dumps(tokenizer_json.get("pre_tokenizer")):
        return "gpt2"
    if model.get("byte_fallback"):
        return "llama"
    raise ExportError("unsupported tokenizer: neither byte-level BPE nor sentencepiece BPE")


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for how text is split before the merges (SmolLM splits every digit)."""
    return "smollm" if '"individual_digits": true' in json.dumps(tokenizer_json) else "gpt2"


def vocabulary(model_path: Path, n_vocab: int) -> tuple[str, list[str], list[int], dict]:
    """``(kind, tokens by id, token types, tokenizer.json)`` padded to the model's vocab size."""
    from transformers import AutoTokenizer

    tokenizer_file = model_path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ExportError(f"{model_path} has no tokenizer.json (a fast tokenizer is needed)")
    tokenizer_json = json.loads(tokenizer_file.read_text())
    kind = tokenizer_kind(tokenizer_json)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = {token.content: token for token in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for index in range(n_vocab):
        token = by_id.get(index, f"[PAD{index}]")
        tokens.append(token)
        if token in added:
            types.append(CONTROL if added[token].special else USER_DEFINED)
        elif index not in by_id:
            types.append(USER_DEFINED)
        elif kind == "llama" and token.startswith("<0x") and len(token) == 6:
            types.append(BYTE)
        elif token == tokenizer.unk_token:
            types.append(UNKNOWN)
        else:
            types.append(NORMAL)
    return kind, tokens, types, tokenizer_json


def add_tokenizer_metadata(writer: Any, model_path: Path, n_vocab: int) -> None:
    """Vocabulary, merges, special ids and chat template, under llama.cpp's key names."""
    import gguf

    kind, tokens, types, tokenizer_json = vocabulary(model_path, n_vocab)
    writer.add_tokenizer_model(kind)
    if kind == "gpt2":
        writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer_json))
    else:
        writer.add_token_scores([-float(index) for index in range(len(tokens))])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_path, load_merges=True, n_vocab=n_vocab).add_to_gguf(writer)


def export(model_path: Path, out: Path, kind: str = "f16") -> Path:
    """Write ``out`` (GGUF, ``kind`` f16 or q8_0) from the Hugging Face model at ``model_path``."""
    import gguf

    if kind not in TYPES:
        raise ExportError(f"--type must be one of {', '.join(TYPES)}, not {kind!r}")
    config = read_config(model_path)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(temporary, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA],
                                 use_temp_file=True)  # fmt: skip
        add_model_metadata(writer, config, model_path.resolve().name, kind)
        add_tokenizer_metadata(writer, model_path, config["vocab_size"])
        for hf_name, data in iter_tensors(model_path):
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ExportError(f"tensor {hf_name} has no GGUF name (not a plain LLaMA model)")
            array, qtype = encode_tensor(hf_name, data, kind, config)
            writer.add_tensor(name, array, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", "--model_path", type=Path, required=True)
    parser.add_argument("--out", "--outfile", type=Path, required=True)
    parser.add_argument("--type", "--outtype", default="f16", choices=TYPES)
    args = parser.parse_args(argv)

    def run() -> str:
        written = export(args.model_path, args.out, args.type)
        return f"wrote {args.type} GGUF {written} ({written.stat().st_size} bytes)"

    return exit_status(run, ExportError)


if __name__ == "__main__":
    sys.exit(main())
