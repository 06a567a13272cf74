"""Checkpoint folders: which one is complete, and publishing ``final/`` atomically.

The Trainer writes ``checkpoints/checkpoint-<step>/`` (weights or adapter, optimizer, scheduler,
RNG states, ``trainer_state.json``). A worker killed mid-save leaves a partial folder, so a
checkpoint only counts once ``COMPLETE_MARKER`` is written after the Trainer finished saving it;
resuming picks the newest marked one and removes unmarked ones. ``final/`` appears by renaming a
finished temporary folder, so it is either absent or whole.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "checkpoint_complete.json"
FULL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    suffix = name[len(CHECKPOINT_PREFIX) :]
    return int(suffix) if suffix.isdigit() else None


def mark_complete(checkpoint: Path, step: int) -> None:
    """Written last, after every file of the checkpoint is on disk."""
    tmp = checkpoint / f".{COMPLETE_MARKER}.tmp"
    tmp.write_text(json.dumps({"step": step, "completed_at": time.time()}))
    os.replace(tmp, checkpoint / COMPLETE_MARKER)


def is_complete(checkpoint: Path) -> bool:
    marked = (checkpoint / COMPLETE_MARKER).is_file()
    return marked and (checkpoint / "trainer_state.json").is_file()


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint folder, oldest first."""
    if not folder.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in folder.iterdir() if p.is_dir()]
    return sorted((step, p) for step, p in found if step is not None)


def newest_complete_checkpoint(folder: Path) -> Path | None:
    complete = [p for _, p in list_checkpoints(folder) if is_complete(p)]
    return complete[-1] if complete else None


def discard_incomplete_checkpoints(folder: Path) -> list[Path]:
    """Remove checkpoint folders a killed run left half-written; returns what was removed."""
    removed = []
    for _, path in list_checkpoints(folder):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def is_adapter_only(checkpoint: Path) -> bool:
    """True when a checkpoint holds LoRA weights and no copy of the base model."""
    has_adapter = any((checkpoint / name).is_file() for name in ADAPTER_FILES)
    has_full = any((checkpoint / name).is_file() for name in FULL_WEIGHT_FILES)
    return has_adapter and not has_full


def staging_dir(output_dir: Path) -> Path:
    """Where ``final/`` is assembled before it is renamed into place."""
    return output_dir / ".final.partial"


def clear_staging(output_dir: Path) -> None:
    shutil.rmtree(staging_dir(output_dir), ignore_errors=True)


def publish_final(output_dir: Path) -> Path:
    """Rename the finished staging folder to ``final/`` (atomic on one filesystem)."""
    final = output_dir / "final"
    if final.exists():  # a previous attempt published, then died before recording the result
        shutil.rmtree(final)
    os.replace(staging_dir(output_dir), final)
    return final
