"""Load a model and tokenizer from a local folder or a Hub id, on cpu/cuda/mps, in a chosen dtype,
optionally quantized to 8 or 4 bits with bitsandbytes, whole on one device or split across GPUs,
CPU and disk (``placement.py``). A causal LM generates (and embeds); an encoder such as a
sentence-transformers model (all-MiniLM-L6-v2) is loaded with ``AutoModel`` and only embeds."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.model_worker.placement import (
    Placement,
    PlacementError,
    PlacementOptions,
    apply_visible_gpus,
    plan_for_this_machine,
)
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
    kind: str = "causal"
    # The folder (or Hub id) it was loaded from: its generation_config.json gives defaults.
    path: str = ""

    @property
    def generates(self) -> bool:
        return self.kind == "causal"


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


def is_causal_lm(model_path: str, config: Any) -> bool:
    """A model that generates text; else an encoder served for embeddings only (a
    sentence-transformers folder, or a config whose architectures are not causal LMs: BERT's
    config also maps to a causal LM class, so the architectures decide first)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    if (Path(model_path).expanduser() / "modules.json").exists():
        return False
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    return type(config) in MODEL_FOR_CAUSAL_LM_MAPPING


def _plan(options: PlacementOptions) -> Placement:
    try:
        apply_visible_gpus(options)
        placement = plan_for_this_machine(options)
    except PlacementError as exc:
        raise ModelLoadError(str(exc)) from exc
    for warning in placement.warnings:
        log.warning("event=placement_warning %s", warning)
    return placement


def _quantization(load_8bit: bool, load_4bit: bool, dtype: Any, placement: Placement) -> Any:
    from transformers import BitsAndBytesConfig

    if placement.device_map is None:
        placement.device_map = {"": placement.device if placement.device != "cuda" else 0}
    return BitsAndBytesConfig(
        load_in_8bit=load_8bit,
        load_in_4bit=load_4bit,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        llm_int8_enable_fp32_cpu_offload=placement.fp32_cpu_offload,
    )


def _from_pretrained(model_path: str, kwargs: dict[str, Any]) -> tuple[Any, Any, str]:
    """(tokenizer, model, kind): ``causal`` generates, ``embedding`` only embeds."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        config = AutoConfig.from_pretrained(model_path)
        if is_causal_lm(model_path, config):
            return tokenizer, AutoModelForCausalLM.from_pretrained(model_path, **kwargs), "causal"
        return tokenizer, AutoModel.from_pretrained(model_path, **kwargs), "embedding"
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load model {model_path!r}: {exc}") from exc


def load_model(
    model_path: str,
    device: str = "auto",
    dtype: str = "auto",
    load_8bit: bool = False,
    load_4bit: bool = False,
    placement: PlacementOptions | None = None,
) -> LoadedModel:
    """Load for inference. Hub ids need network unless cached (HF_HUB_OFFLINE is respected).

    ``placement`` (the multi-GPU and offload flags) overrides ``device`` and ``load_8bit``.
    """
    from transformers.utils import logging as hf_logging

    if load_8bit and load_4bit:
        raise ModelLoadError("choose one of load_8bit and load_4bit")
    _check_source(model_path)
    # One line in the log is enough; the per-tensor progress bar is noise in service logs.
    hf_logging.disable_progress_bar()
    options = placement or PlacementOptions(device=device, load_8bit=load_8bit)
    plan = _plan(options)
    torch_dtype = resolve_dtype(dtype, plan.device)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if load_8bit or load_4bit:
        kwargs["quantization_config"] = _quantization(load_8bit, load_4bit, torch_dtype, plan)
    kwargs |= plan.from_pretrained_kwargs()
    if plan.device_map is not None and plan.offload_folder is None:
        kwargs["offload_folder"] = tempfile.mkdtemp(prefix="camel-chat-offload-")
    tokenizer, model, kind = _from_pretrained(model_path, kwargs)
    if plan.device_map is None:
        model.to(plan.device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    ctx = context_length(model.config)
    log.info(
        "event=model_loaded path=%s kind=%s device=%s dtype=%s quant=%s context_len=%d "
        "device_map=%s",
        model_path,
        kind,
        plan.device,
        str(torch_dtype).removeprefix("torch."),
        "8bit" if load_8bit else "4bit" if load_4bit else "none",
        ctx,
        _summary(getattr(model, "hf_device_map", None)),
    )
    return LoadedModel(model, tokenizer, plan.device, str(torch_dtype), ctx, kind, model_path)


def _summary(device_map: dict[str, Any] | None) -> str:
    """How many modules went where: ``cpu:3,disk:2``."""
    if not device_map:
        return "none"
    counts: dict[str, int] = {}
    for where in device_map.values():
        name = f"cuda:{where}" if isinstance(where, int) else str(where)
        counts[name] = counts.get(name, 0) + 1
    return ",".join(f"{k}:{v}" for k, v in counts.items())
