"""Read and check a merge's inputs from their files, before (and right after) loading weights.

An adapter records what it was trained on: ``adapter_config.json`` names the base folder or Hub
id and the base class, ``camel_training.json`` (written by our trainer) the base too, and every
LoRA matrix's shape pins the sizes of the layer it wraps. A base that does not match is refused
with the field that differs, instead of PEFT's size-mismatch traceback or a silently wrong merge.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.merger.errors import MergeError
from shared.contracts import TRAINING_SUMMARY_FILE

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")
# Config fields two bases must share for an adapter of one to fit the other.
_SHAPE_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
)
_CONFIG_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
_PEFT_PREFIX = "base_model.model."
# What a merge needs from a Hub base: config, weights, tokenizer, chat template.
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


@dataclass
class AdapterInfo:
    path: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None
    # Tensor name (as PEFT saves it) -> shape; empty when the weights are not safetensors.
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def recorded_base(self) -> str | None:
        recorded = self.config.get("base_model_name_or_path")
        if not recorded and self.summary:
            recorded = self.summary.get("base_model")
        return recorded or None

    @property
    def base_class(self) -> str | None:
        return (self.config.get("auto_mapping") or {}).get("base_model_class")

    @property
    def has_tokenizer(self) -> bool:
        return any((self.path / name).is_file() for name in TOKENIZER_FILES)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MergeError(f"{what} {path} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise MergeError(f"{what} {path} is not a JSON object")
    return data


def resolve_base(base_model: str | Path) -> Path:
    """A local folder, or a Hub id (``org/name``) found in the Hugging Face cache, where the
    trainer's download of a job's base lives (downloaded now unless ``HF_HUB_OFFLINE`` is set)."""
    path = Path(base_model).expanduser()
    name = str(base_model)
    looks_local = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if looks_local or name.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=_HUB_FILES))
    except Exception as exc:  # offline and not cached, unknown repo, network errors ...
        raise MergeError(
            f"base model {name} is neither a local folder nor an available Hub model: {exc}"
        ) from exc


def read_base_config(base: Path) -> dict[str, Any]:
    path = base / "config.json"
    if not base.is_dir():
        raise MergeError(f"base model folder {base} not found")
    if not path.is_file():
        raise MergeError(f"base model folder {base} has no config.json")
    return _read_json(path, "base model config")


def read_adapter(adapter: Path) -> AdapterInfo:
    if not adapter.is_dir():
        raise MergeError(f"adapter folder {adapter} not found")
    config_path = adapter / ADAPTER_CONFIG
    if not config_path.is_file():
        hint = (
            " (it holds a full model, not an adapter)"
            if (adapter / "config.json").is_file()
            else ""
        )
        raise MergeError(f"adapter folder {adapter} has no {ADAPTER_CONFIG}{hint}")
    config = _read_json(config_path, "adapter config")
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise MergeError(f"adapter {adapter} is {peft_type or 'not a PEFT adapter'}, not LoRA")
    if not any((adapter / name).is_file() for name in ADAPTER_WEIGHTS):
        raise MergeError(
            f"adapter folder {adapter} has no weights ({' or '.join(ADAPTER_WEIGHTS)})"
        )
    summary_path = adapter / TRAINING_SUMMARY_FILE
    summary = _read_json(summary_path, "training summary") if summary_path.is_file() else None
    return AdapterInfo(adapter, config, summary, _safetensors_shapes(adapter / ADAPTER_WEIGHTS[0]))


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the file's JSON header (8-byte length, then JSON): no tensor is read,
    and no framework needs importing."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        return {
            name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"
        }
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise MergeError(f"adapter weights {path} are unreadable: {exc}") from exc


def check_not_quantized(base: Path, config: dict[str, Any]) -> None:
    """Merging into 4-bit (or 8-bit) weights rounds the LoRA delta away or fails outright."""
    quant = config.get("quantization_config")
    if not quant:
        return
    bits = "4-bit" if quant.get("load_in_4bit") or quant.get("bits") == 4 else "quantized"
    method = quant.get("quant_method", "unknown method")
    raise MergeError(
        f"base model {base} is {bits} ({method}); merge into the 16-bit or fp32 base the "
        "adapter was trained from (a QLoRA adapter merges into the unquantized base)"
    )


def check_recorded_base(adapter: AdapterInfo, base: Path, base_config: dict[str, Any]) -> None:
    """Compare the base the adapter was trained on (when it says) with the one given."""
    architectures = base_config.get("architectures") or []
    if adapter.base_class and architectures and adapter.base_class not in architectures:
        raise MergeError(
            f"architecture mismatch: the adapter was trained on a {adapter.base_class}, "
            f"but {base} is a {', '.join(architectures)}"
        )
    recorded = adapter.recorded_base
    if recorded is None:
        return
    recorded_dir = Path(recorded).expanduser()
    if not (recorded_dir / "config.json").is_file() or recorded_dir.resolve() == base.resolve():
        return  # a Hub id or a moved folder: the weight shapes are checked after loading
    try:
        trained_on = json.loads((recorded_dir / "config.json").read_text())
    except (OSError, ValueError):
        return
    for name in _SHAPE_FIELDS:
        mine, theirs = base_config.get(name), trained_on.get(name)
        if mine is not None and theirs is not None and mine != theirs:
            raise MergeError(
                f"{name} mismatch: the adapter was trained on {recorded} ({name}={theirs}), "
                f"but {base} has {name}={mine}"
            )


def check_tokenizer_fits(tokenizer: Any, base: Path, base_config: dict[str, Any]) -> None:
    """An adapter's tokenizer with more tokens than the base's embeddings cannot be served."""
    vocab = base_config.get("vocab_size") or (base_config.get("text_config") or {}).get(
        "vocab_size"
    )
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise MergeError(
            f"vocab size mismatch: the tokenizer has {len(tokenizer)} tokens but {base} "
            f"embeds {vocab} (vocab_size); was the adapter trained on another base?"
        )


def check_shapes(adapter: AdapterInfo, model: Any) -> None:
    """Every LoRA matrix against the layer it wraps in the loaded base (before PEFT loads it)."""
    recorded = f" (trained on {adapter.recorded_base})" if adapter.recorded_base else ""
    for key, shape in adapter.shapes.items():
        name = key.removeprefix(_PEFT_PREFIX)
        module_name, _, tail = name.rpartition(".")
        if tail != "weight":
            continue
        parent, _, kind = module_name.rpartition(".")
        if kind in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
            _check_lora_matrix(model, parent, kind, shape, recorded)
        else:  # a fully trained module (modules_to_save): same shape as the base's
            try:
                expected = tuple(model.get_parameter(name).shape)
            except AttributeError:
                continue
            if expected != shape:
                raise MergeError(
                    f"{name} has shape {list(shape)} in the adapter but {list(expected)} in the "
                    f"base model{recorded}"
                )


def _check_lora_matrix(
    model: Any, module_name: str, kind: str, shape: tuple[int, ...], recorded: str
) -> None:
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        raise MergeError(
            f"target module mismatch: the adapter wraps {module_name}, which the base model "
            f"does not have{recorded}"
        ) from None
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2 or len(shape) != 2:
        return
    if kind.startswith("lora_embedding"):
        rows, dim = weight.shape  # embedding: (num_embeddings, dim)
        checks = {"lora_embedding_A": (1, rows, "vocab size"), "lora_embedding_B": (0, dim, "size")}
    else:
        out_features, in_features = weight.shape  # linear: (out, in)
        checks = {
            "lora_A": (1, in_features, "input size"),
            "lora_B": (0, out_features, "output size"),
        }
    axis, expected, what = checks[kind]
    if shape[axis] != expected:
        raise MergeError(
            f"shape mismatch: {module_name} has {what} {expected} in the base model but "
            f"{shape[axis]} in the adapter's {kind}{recorded}"
        )


def resolve_dtype(requested: str, base_config: dict[str, Any]) -> str:
    """``auto``: the dtype the base was saved in (``torch_dtype`` or ``dtype``), else fp32."""
    if requested != "auto":
        return requested
    saved = base_config.get("torch_dtype") or base_config.get("dtype")
    return _CONFIG_DTYPES.get(str(saved), "fp32")
