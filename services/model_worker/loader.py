"""Load a model and tokenizer from a local folder or a Hub id, on cpu/cuda/mps, in a chosen dtype,
optionally quantized to 8 or 4 bits with bitsandbytes."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.contracts import looks_like_path

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why in plain words."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    context_len: int
    # The folder (or Hub id) it was loaded from: its generation_config.json gives defaults.
    path: str = ""


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError("device=cuda was asked for but no CUDA GPU is visible")
        if device == "mps" and not torch.backends.mps.is_available():
            raise ModelLoadError("device=mps was asked for but MPS is not available")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The instruction-set flags of this machine's CPU (empty where /proc/cpuinfo is absent)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_fast_bf16(flags: set[str] | None = None) -> bool:
    """bf16 matmuls run natively (AVX512-BF16 or AMX): half the memory traffic of fp32 at about
    the same greedy output. Elsewhere bf16 is emulated and slower than fp32."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "mps":
            return torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return getattr(torch, dtype)


def context_length(config: Any) -> int:
    for attr in ("max_sequence_length", "max_position_embeddings", "n_positions", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def _check_source(model_path: str) -> None:
    path = Path(model_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{model_path} is a folder but holds no config.json")
        return
    if looks_like_path(model_path):
        raise ModelLoadError(f"model folder {model_path} does not exist")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        log.info("event=hub_offline model=%s (only the local cache will be used)", model_path)


def load_model(
    model_path: str,
    device: str = "auto",
    dtype: str = "auto",
    load_8bit: bool = False,
    load_4bit: bool = False,
) -> LoadedModel:
    """Load for inference. Hub ids need network unless cached (HF_HUB_OFFLINE is respected)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from transformers.utils import logging as hf_logging

    if load_8bit and load_4bit:
        raise ModelLoadError("choose one of load_8bit and load_4bit")
    _check_source(model_path)
    # One line in the log is enough; the per-tensor progress bar is noise in service logs.
    hf_logging.disable_progress_bar()
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if load_8bit or load_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=load_8bit,
            load_in_4bit=load_4bit,
            bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": resolved_device if resolved_device != "cuda" else 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(f"could not load model {model_path!r}: {exc}") from exc
    if "device_map" not in kwargs:
        model.to(resolved_device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ctx = context_length(model.config)
    log.info(
        "event=model_loaded path=%s device=%s dtype=%s quant=%s context_len=%d",
        model_path,
        resolved_device,
        str(torch_dtype).removeprefix("torch."),
        "8bit" if load_8bit else "4bit" if load_4bit else "none",
        ctx,
    )
    return LoadedModel(model, tokenizer, resolved_device, str(torch_dtype), ctx, model_path)
