"""Load the base model and tokenizer for a method: full, LoRA (peft) or QLoRA (bitsandbytes).

QLoRA follows the original's recipe and the QLoRA paper's: NF4 with double quantization,
16-bit compute where the device has it, LoRA on every linear layer except the output head,
k-bit preparation (norms in fp32, input gradients for checkpointing). Attention is PyTorch SDPA,
or flash-attention 2 when it is installed on a CUDA machine.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import torch

from services.trainer import varlen_attention
from services.trainer.errors import TrainingError
from services.trainer.lean_dropout import lean_lora_dropout
from shared.training import Hyperparameters, Method

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls run natively instead of being emulated."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def resolve_precision(requested: str = "auto") -> Precision:
    """Mixed precision to train with: bf16 where the hardware runs it natively, else fp16 or fp32.

    On CPU, bf16 autocast is about twice as fast as fp32 on AVX-512 BF16 machines, and its loss
    curve tracked fp32's in our measurements (see the trainer README); on other CPUs it is fp32.
    Master weights and the optimizer stay fp32 in every case.
    """
    if requested not in PRECISIONS:
        raise TrainingError(f"unknown precision {requested!r}; choose one of {PRECISIONS}")
    cuda = torch.cuda.is_available()
    if requested == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if requested == "fp16" and not cuda:
        raise TrainingError("fp16 mixed precision needs a CUDA GPU; use bf16 or fp32 on CPU")
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise TrainingError("this GPU has no bf16; use fp16 or fp32")
    return requested  # type: ignore[return-value]


def attention_implementation() -> str:
    """flash_attention_2 when installed with a GPU (packing then flattens batches), else
    ``sdpa_varlen``: SDPA run per packed sample (``varlen_attention``), plain SDPA otherwise."""
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return varlen_attention.register()


def check_model_folder(model: str) -> None:
    """A local base model must be a folder with a config.json (Hub ids are left to loading)."""
    path = Path(model).expanduser()
    looks_local = path.is_absolute() or model.startswith(".") or path.exists()
    if looks_local and not (path / "config.json").is_file():
        raise TrainingError(f"base model folder {model} not found (no config.json there)")


def tokenizer_has_chat_template(model: str) -> bool | None:
    """Whether a local model's tokenizer ships a chat template, read from files (no loading)."""
    path = Path(model).expanduser()
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    config = path / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        return bool(json.loads(config.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return None


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    check_model_folder(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception as exc:
        raise TrainingError(f"cannot load the tokenizer of {model}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise TrainingError(f"the tokenizer of {model} is not a fast tokenizer (offsets needed)")
    return tokenizer


def _device_map(method: Method) -> dict[str, Any] | None:
    """Quantized weights must be placed at load time; other methods let the Trainer place them."""
    if method != "qlora":
        return None
    if torch.cuda.is_available():
        from accelerate import PartialState

        return {"": PartialState().local_process_index}
    return {"": "cpu"}


def _placement(method: Method, max_memory_mb: int | None) -> dict[str, Any]:
    """``device_map`` (and ``max_memory``) for ``from_pretrained``.

    With ``max_memory_mb`` (the original's ``--max_memory_MB``) accelerate places the weights
    within that budget per device, as the original did: every visible GPU in one process, the
    process's own GPU under a launcher, the CPU without GPUs. A model that does not fit fails.
    """
    if max_memory_mb is None:
        return {"device_map": _device_map(method)}
    budget = f"{max_memory_mb}MB"
    if not torch.cuda.is_available():
        return {"device_map": "auto", "max_memory": {"cpu": budget}}
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes > 1:
        rank = state.local_process_index
        return {"device_map": {"": rank}, "max_memory": {rank: budget}}
    return {
        "device_map": "auto",
        "max_memory": dict.fromkeys(range(torch.cuda.device_count()), budget),
    }


def _check_fits(base: Any, model: str, max_memory_mb: int | None) -> None:
    """Weights accelerate could not place within the budget were sent to disk or left on meta."""
    placed = set((getattr(base, "hf_device_map", None) or {}).values())
    if max_memory_mb is not None and placed & {"disk", "meta"}:
        raise TrainingError(
            f"{model} does not fit in max_memory_MB={max_memory_mb} per device; raise it"
        )


def load_model(
    model: str, method: Method, hp: Hyperparameters, precision: Precision, attention: str
) -> Any:
    """The model to train: full weights, or a peft model whose only trainable part is LoRA."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    check_model_folder(model)
    compute_dtype = _DTYPES[precision]
    kwargs: dict[str, Any] = {
        "attn_implementation": attention,
        **_placement(method, hp.max_memory_mb),
    }
    if method == "full":
        kwargs["dtype"] = torch.float32  # fp32 master weights; autocast does the 16-bit math
    elif method == "lora":
        kwargs["dtype"] = compute_dtype  # the frozen base only needs the compute precision
    else:
        kwargs["dtype"] = torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=hp.bits == 4,
            load_in_8bit=hp.bits == 8,
            bnb_4bit_quant_type=hp.quant_type,
            bnb_4bit_use_double_quant=hp.double_quant,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_threshold=6.0,
            llm_int8_has_fp16_weight=False,
        )
    try:
        base = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    except (torch.OutOfMemoryError, MemoryError):
        raise
    except Exception as exc:  # corrupt weights, unknown architecture, missing kernels ...
        if hp.max_memory_mb is not None and "offload" in str(exc):
            raise TrainingError(
                f"{model} does not fit in max_memory_MB={hp.max_memory_mb} per device; raise it"
            ) from exc
        raise TrainingError(f"cannot load base model {model}: {exc}") from exc
    _check_fits(base, model, hp.max_memory_mb)
    base.config.use_cache = False  # no KV cache in training; it would also disable packing masks
    if method == "full":
        return base
    return _with_lora(base, method, hp)


def _with_lora(base: Any, method: Method, hp: Hyperparameters) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if method == "qlora":
        _keep_4bit_weights_trainable(base)
        base = prepare_model_for_kbit_training(
            base,
            use_gradient_checkpointing=hp.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=hp.lora_target_modules,  # "all-linear" leaves the output head out
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(base, config)
    except ValueError as exc:
        raise TrainingError(f"cannot apply LoRA: {exc}") from exc
    lean_lora_dropout(model)
    return model


def _keep_4bit_weights_trainable(model: Any) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference during evaluation.

    On AVX-512 BF16 CPUs, bitsandbytes 0.50 converts a Linear4bit's weight to an inference-only
    layout the first time it runs in eval mode without gradients, and does not convert it back in
    train mode: after the first evaluation, backward passes through ``gemv_4bit``, which has no
    autograd kernel, so gradients stop flowing through the frozen layers ("an autograd kernel was
    not registered" warning). Evaluation is a little slower without that layout; training is right.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "pytorch_model.bin")


def load_adapter_weights(model: Any, method: Method, checkpoint_path: str) -> Path:
    """Load LoRA weights from a checkpoint folder into ``model`` (the original QLoRA script's
    ``--checkpoint_path``); the file loaded, or ``TrainingError`` naming the folder."""
    if method == "full":
        raise TrainingError("checkpoint_path holds adapter weights: only for lora or qlora")
    folder = Path(checkpoint_path).expanduser()
    for name in ADAPTER_WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            break
    else:
        raise TrainingError(f"checkpoint_path {checkpoint_path}: no adapter weights there")
    from peft import set_peft_model_state_dict

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        weights = load_file(str(path))
    else:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    result = set_peft_model_state_dict(model, weights)
    if not any("lora_" in key for key in weights) or getattr(result, "unexpected_keys", None):
        raise TrainingError(f"checkpoint_path {checkpoint_path}: not this model's LoRA weights")
    return path
