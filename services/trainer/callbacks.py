"""Trainer callbacks: job events and TensorBoard, cancellation, checkpoint markers, progress bar.

Events are plain dicts (the job's event stream):
``{"type": "metrics", "data": {"step", "loss", "learning_rate", "tokens_per_s", "epoch", "eta_s",
"grad_norm"}}`` after every logging step, the same with ``eval_loss`` after each evaluation, and
``{"type": "checkpoint", "step", "path", "metrics"}`` once a checkpoint is completely on disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from services.trainer.checkpoints import CHECKPOINT_PREFIX, mark_complete

Emit = Callable[[dict[str, Any]], None]


class EventReporter(TrainerCallback):
    """Turns Trainer logs into metrics events and TensorBoard scalars (main process only)."""

    def __init__(self, emit: Emit, tensorboard_dir: Path | None) -> None:
        self.emit = emit
        self.tensorboard_dir = tensorboard_dir
        self.writer: Any = None
        self.last: dict[str, float] = {}
        self._run_start = 0.0
        self._run_start_step = 0
        self._mark_time = 0.0
        self._mark_tokens = 0

    def on_train_begin(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        self._run_start = self._mark_time = time.monotonic()
        self._run_start_step = state.global_step
        self._mark_tokens = state.num_input_tokens_seen
        if self.tensorboard_dir is not None and state.is_world_process_zero:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the tensorboard package is optional
                self.emit(
                    {
                        "type": "message",
                        "level": "warn",
                        "message": "tensorboard is not installed: no TensorBoard logs",
                    }
                )
                return
            # purge_step hides what a killed run logged after the checkpoint we resume from.
            self.writer = SummaryWriter(
                str(self.tensorboard_dir), purge_step=state.global_step or None
            )

    def on_log(self, args, state: TrainerState, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            now = time.monotonic()
            tokens = state.num_input_tokens_seen
            elapsed = max(now - self._mark_time, 1e-9)
            done = state.global_step - self._run_start_step
            per_step = (now - self._run_start) / max(done, 1)
            self.last = {
                "step": state.global_step,
                "loss": float(logs["loss"]),
                "learning_rate": float(logs.get("learning_rate", 0.0)),
                "tokens_per_s": (tokens - self._mark_tokens) / elapsed,
                "epoch": float(state.epoch or 0.0),
                "eta_s": max(state.max_steps - state.global_step, 0) * per_step,
                "trained_tokens": tokens,
            }
            if "grad_norm" in logs:
                self.last["grad_norm"] = float(logs["grad_norm"])
            self._mark_time, self._mark_tokens = now, tokens
            self.emit({"type": "metrics", "data": dict(self.last)})
            self._scalars("train", self.last, state.global_step)
        if "eval_loss" in logs:
            data = {**self.last, "step": state.global_step, "eval_loss": float(logs["eval_loss"])}
            self.last["eval_loss"] = data["eval_loss"]
            self.emit({"type": "metrics", "data": data})
            self._scalars("eval", {"loss": data["eval_loss"]}, state.global_step)

    def _scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key in ("loss", "learning_rate", "tokens_per_s", "grad_norm"):
            if key in values:
                self.writer.add_scalar(f"{prefix}/{key}", values[key], step)
        self.writer.flush()

    def on_save(self, args: TrainingArguments, state: TrainerState, control, **kwargs):
        # The Trainer calls on_save after every file of the checkpoint is written.
        path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        if state.is_world_process_zero and path.is_dir():
            mark_complete(path, state.global_step)
            self.emit(
                {
                    "type": "checkpoint",
                    "step": state.global_step,
                    "path": str(path),
                    "metrics": dict(self.last),
                }
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def stop_agreed(should_stop: Callable[[], bool]) -> bool:
    """``should_stop()``, made the same on every process: any process asking stops them all.

    Processes deciding differently would leave one waiting forever for the others' gradients.
    Every process must call this at the same points.
    """
    local = bool(should_stop())
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return local
    from accelerate import PartialState

    flag = torch.tensor([1 if local else 0], device=PartialState().device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


class CancelOnRequest(TrainerCallback):
    """Polls ``should_stop`` around every micro-batch; stops without saving anything more.

    Also polled on each log, which the Trainer runs between a step's end and its checkpoint
    save, so a stop requested while the step's metrics are reported skips that save too.
    """

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop
        self.cancelled = False

    def _check(self, control: TrainerControl) -> TrainerControl:
        if self.cancelled or stop_agreed(self.should_stop):
            self.cancelled = True
            control.should_training_stop = True
            control.should_epoch_stop = True
            control.should_save = False
            control.should_evaluate = False
        return control

    def on_step_begin(self, args, state, control, **kwargs):
        return self._check(control)

    def on_substep_end(self, args, state, control, **kwargs):
        return self._check(control)

    def on_step_end(self, args, state, control, **kwargs):
        return self._check(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        return self._check(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        return self._check(control)


class CheckpointOnSchedule(TrainerCallback):
    """Checkpoint only every ``save_steps``, not also at the last step as the Trainer would.

    The last step is followed at once by ``final/``; an extra checkpoint there would write the
    optimizer state once more (twice the model's size for a full finetune) for nothing.
    """

    def on_step_end(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if state.global_step >= state.max_steps and state.global_step % state.save_steps:
            control.should_save = False
        return control


class ProgressBar(TrainerCallback):
    """A tqdm bar over optimizer steps (the CLI's); print above it with ``tqdm.write``."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, args, state: TrainerState, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step")

    def on_step_end(self, args, state: TrainerState, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
