"""Where a model's weights go: one device, several GPUs, or GPUs plus CPU plus disk.

The seed's flags (``--device``, ``--gpus``, ``--num-gpus``, ``--max-gpu-memory``,
``--load-8bit``, ``--cpu-offloading``) become a ``Placement``: the device inputs go to, and for
split models accelerate's ``device_map`` and ``max_memory``, which ``from_pretrained`` hands to
``infer_auto_device_map``. Planning is a pure function of the flags and of what the machine has
(GPU count, free memory per GPU), so it is tested on a machine without GPUs.

Differences from FastChat, on purpose:

- ``--device`` defaults to ``auto``; with ``auto`` and no GPU at all, ``--num-gpus N`` runs on
  the CPU with a warning (FastChat's default ``cuda`` fails deep in torch). An explicit
  ``--device cuda`` with fewer GPUs than ``--num-gpus`` is an error naming both.
- ``--cpu-offloading`` also works without 8-bit: layers that do not fit the GPUs (under
  ``--max-gpu-memory``) are kept in CPU memory; with 8-bit they are kept in fp32, as
  bitsandbytes needs. ``--max-cpu-memory`` caps the CPU's share; what fits nowhere is offloaded
  to disk (``--offload-folder``), also on a CPU-only machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GIB = 1024**3
# FastChat caps each GPU at 85 % of its free memory when no --max-gpu-memory is given.
FREE_MEMORY_SHARE = 0.85


class PlacementError(ValueError):
    """Flags that cannot be honoured on this machine; the message names the flags."""


@dataclass(frozen=True)
class PlacementOptions:
    device: str = "auto"
    num_gpus: int = 1
    gpus: str = ""
    max_gpu_memory: str = ""
    max_cpu_memory: str = ""
    cpu_offloading: bool = False
    load_8bit: bool = False
    offload_folder: str = ""


@dataclass
class Placement:
    """``device``: where inputs go. ``device_map`` None: load whole, then move to ``device``."""

    device: str
    device_map: str | dict[str, Any] | None = None
    max_memory: dict[int | str, int] | None = None
    offload_folder: str | None = None
    fp32_cpu_offload: bool = False
    warnings: list[str] = field(default_factory=list)

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        if self.max_memory is not None:
            kwargs["max_memory"] = self.max_memory
        if self.offload_folder is not None:
            kwargs["offload_folder"] = self.offload_folder
        return kwargs


def memory_bytes(value: str, flag: str) -> int:
    """``"13GiB"``, ``"500MB"``, ``"2048"`` (bytes) as accelerate reads them; else an error."""
    from accelerate.utils import convert_file_size_to_int

    value = value.strip()
    try:
        size = int(value) if value.isdigit() else convert_file_size_to_int(value)
    except (ValueError, TypeError):
        raise PlacementError(f"{flag} {value!r} is not a size (e.g. 13GiB, 500MB)") from None
    if size <= 0:
        raise PlacementError(f"{flag} {value!r} must be positive")
    return size


def parse_gpu_ids(gpus: str, num_gpus: int) -> list[int]:
    """``--gpus 0,2``: the ids to make visible; it must list at least ``--num-gpus`` of them."""
    try:
        ids = [int(part) for part in gpus.split(",") if part.strip()]
    except ValueError:
        raise PlacementError(f"--gpus {gpus!r} must be GPU ids separated by commas") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise PlacementError(f"--gpus {gpus!r} must list distinct non-negative ids")
    if len(ids) < num_gpus:
        raise PlacementError(f"--gpus {gpus!r} lists fewer than --num-gpus {num_gpus} GPUs")
    return ids


def apply_visible_gpus(options: PlacementOptions) -> None:
    """Set CUDA_VISIBLE_DEVICES from ``--gpus``; before CUDA starts, or it has no effect."""
    if options.gpus:
        ids = parse_gpu_ids(options.gpus, options.num_gpus)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))


def choose_device(options: PlacementOptions, gpu_count: int, mps: bool) -> tuple[str, list[str]]:
    """The device, and warnings; an explicit device the machine lacks is an error."""
    warnings: list[str] = []
    device = options.device
    if device == "auto":
        device = "cuda" if gpu_count else "mps" if mps else "cpu"
        if not gpu_count and (options.num_gpus > 1 or options.max_gpu_memory):
            warnings.append(
                f"--num-gpus {options.num_gpus}"
                + (f" --max-gpu-memory {options.max_gpu_memory}" if options.max_gpu_memory else "")
                + f" asked for, but no CUDA GPU is visible: running on {device}"
            )
    if device == "cuda" and gpu_count == 0:
        raise PlacementError("--device cuda asked for, but no CUDA GPU is visible")
    if device == "cuda" and gpu_count < options.num_gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise PlacementError(
            f"--num-gpus {options.num_gpus} asked for, but {gpu_count} CUDA GPU(s) are visible"
            + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
        )
    if device == "mps" and not mps:
        raise PlacementError("--device mps asked for, but MPS is not available")
    return device, warnings


def plan_placement(
    options: PlacementOptions,
    gpu_count: int,
    free_gpu_bytes: Callable[[int], int],
    mps: bool = False,
    available_cpu_bytes: Callable[[], int] | None = None,
) -> Placement:
    """Where the weights go, as FastChat's ``load_model`` decides it (see the module's notes)."""
    device, warnings = choose_device(options, gpu_count, mps)
    offloading = options.cpu_offloading
    if offloading and device != "cuda":
        warnings.append(f"--cpu-offloading needs CUDA GPUs; ignored on {device}")
        offloading = False
    cpu_cap = (
        memory_bytes(options.max_cpu_memory, "--max-cpu-memory") if options.max_cpu_memory else None
    )
    folder = options.offload_folder or None
    if device == "mps" and cpu_cap is not None:
        warnings.append("--max-cpu-memory applies to CPU and CUDA placement; ignored on mps")
    if device != "cuda":
        if cpu_cap is None or device == "mps":
            return Placement(device, warnings=warnings)
        # CPU only, capped: what does not fit in the cap is offloaded to disk.
        return Placement("cpu", "auto", {"cpu": cpu_cap}, folder, warnings=warnings)
    split = options.num_gpus > 1 or bool(options.max_gpu_memory) or offloading
    if not split:
        return Placement("cuda", {"": 0} if options.load_8bit else None, warnings=warnings)
    if options.max_gpu_memory:
        cap = memory_bytes(options.max_gpu_memory, "--max-gpu-memory")
        max_memory: dict[int | str, int] = {i: cap for i in range(options.num_gpus)}
        device_map = "auto"
    else:
        max_memory = {
            i: int(FREE_MEMORY_SHARE * free_gpu_bytes(i)) for i in range(options.num_gpus)
        }
        device_map = "sequential"
    if offloading:
        max_memory["cpu"] = cpu_cap or (available_cpu_bytes() if available_cpu_bytes else 0)
    elif cpu_cap is not None:
        max_memory["cpu"] = cpu_cap
    placement = Placement("cuda", device_map, max_memory, folder, warnings=warnings)
    placement.fp32_cpu_offload = offloading and options.load_8bit
    return placement


def plan_for_this_machine(options: PlacementOptions) -> Placement:
    """``plan_placement`` with this machine's GPUs and memory."""
    import torch
    from accelerate.utils import get_max_memory

    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0

    def free(index: int) -> int:
        free_bytes, _total = torch.cuda.mem_get_info(index)
        return free_bytes

    return plan_placement(
        options,
        gpu_count,
        free,
        mps=torch.backends.mps.is_available(),
        available_cpu_bytes=lambda: int(get_max_memory().get("cpu", 0)),
    )
