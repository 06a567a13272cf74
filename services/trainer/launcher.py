"""Run a fine-tuning job over several processes: ``accelerate launch`` over a node's GPUs.

The Celery task trains in its own process on CPU or one GPU. On a node with several GPUs it
starts ``accelerate launch -m services.trainer.train --request-file ...`` instead (FSDP
full_shard for full finetunes, DDP for LoRA/QLoRA) and follows the run through the events file
the main rank writes: the same events, checkpoints and metrics reach the job as in-process.
Cancel sends SIGTERM to the whole process group; every rank stops at its next step.

Without GPUs (tests, or ``TRAINER_LAUNCH_PROCESSES`` on a CPU box) the ranks are started with
torchrun and gloo, since accelerate needs MPI for several CPU processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from services.trainer.job import RESULT_FILE, TrainingError
from shared.processes import start_logged
from shared.training import FineTuneRequest
from shared.training_presets import DEEPSPEED_CONFIG_NAME, FSDP_LLAMA, PRESETS, accelerate_config

log = logging.getLogger(__name__)

LAUNCH_DIR = "launch"
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 120.0


def launch_processes(request: FineTuneRequest, node_gpus: int) -> int:
    """How many training processes a job gets on this node (1: train in-process)."""
    forced = int(os.environ.get("TRAINER_LAUNCH_PROCESSES", "0") or 0)
    if forced > 0:
        return forced
    if node_gpus <= 1:
        return 1
    return min(request.gpus, node_gpus) if request.gpus else node_gpus


def launch_config(request: FineTuneRequest, processes: int) -> dict[str, Any]:
    """The job's preset's config on this node; else FSDP with the decoder-layer wrap for full
    finetunes and DDP for LoRA/QLoRA."""
    if request.preset is not None and request.preset in PRESETS:
        config = dict(PRESETS[request.preset].accelerate)
        # One node: the preset's process count is for its whole cluster.
        config.update(num_processes=processes, num_machines=1, rdzv_backend="static")
        return config
    if request.method == "full":
        return accelerate_config("FSDP", processes, fsdp_config=FSDP_LLAMA)
    return accelerate_config("MULTI_GPU", processes)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch_command(
    request: FineTuneRequest, output_dir: Path, processes: int, use_gpus: bool
) -> tuple[list[str], Path]:
    """The command line, and the events file the main rank will write."""
    folder = output_dir / LAUNCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    request_file = folder / "request.json"
    request_file.write_text(request.model_dump_json(indent=2))
    events_file = folder / "events.jsonl"
    events_file.unlink(missing_ok=True)
    if use_gpus:
        config_file = folder / "accelerate.yaml"
        config = launch_config(request, processes)
        preset = PRESETS.get(request.preset or "")
        if preset is not None and preset.deepspeed is not None:
            deepspeed_file = folder / DEEPSPEED_CONFIG_NAME
            deepspeed_file.write_text(preset.config_files()[DEEPSPEED_CONFIG_NAME])
            config["deepspeed_config"] = {
                **config.get("deepspeed_config", {}),
                "deepspeed_config_file": str(deepspeed_file),
            }
        if config.get("num_machines", 1) == 1:
            # A port of its own: two jobs (or test runs) on one node never meet at 29500.
            config.setdefault("main_process_port", _free_port())
        config_file.write_text(yaml.safe_dump(config))
        launcher = [sys.executable, "-m", "accelerate.commands.launch"]
        launcher += ["--config_file", str(config_file), "-m"]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += ["--nproc_per_node", str(processes), "-m"]
    train = ["services.trainer.train", "--request-file", str(request_file)]
    train += ["--output-dir", str(output_dir), "--events-file", str(events_file), "--no-progress"]
    return launcher + train, events_file


class _EventsReader:
    """Reads the JSON lines the main rank appends, a complete line at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        if not self._path.exists():
            return []
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _failure_message(log_path: Path) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    for line in reversed(text.splitlines()):
        if line.startswith("training failed: "):
            return line.removeprefix("training failed: ")
    tail = "\n".join(text.strip().splitlines()[-15:])
    return f"the training processes failed; the end of their log:\n{tail}"


def run_launched(
    request: FineTuneRequest,
    output_dir: Path,
    on_event: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
    processes: int,
    use_gpus: bool,
) -> dict[str, Any]:
    """Train over ``processes`` ranks; the same contract as ``job.run_training``."""
    output_dir = Path(output_dir)
    command, events_file = launch_command(request, output_dir, processes, use_gpus)
    log_path = output_dir / LAUNCH_DIR / "train.log"
    on_event(
        {
            "type": "message",
            "level": "info",
            "message": f"launching {processes} training processes"
            + (" over the node's GPUs with accelerate" if use_gpus else " (CPU, gloo)"),
        }
    )
    events = _EventsReader(events_file)
    stopped_at: float | None = None
    # Its own process group: cancel reaches every rank.
    process = start_logged(command, log_path, start_new_session=True)
    try:
        while process.poll() is None:
            for event in events.read():
                on_event(event)
            if stopped_at is None and should_stop():
                stopped_at = time.monotonic()
                os.killpg(process.pid, signal.SIGTERM)
            elif stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_SECONDS:
                os.killpg(process.pid, signal.SIGKILL)
            time.sleep(POLL_SECONDS)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    for event in events.read():
        on_event(event)
    if stopped_at is not None:
        return {"status": "cancelled", "final_dir": None, "metrics": {}}
    result_file = output_dir / RESULT_FILE
    if process.returncode == 0 and result_file.is_file():
        return json.loads(result_file.read_text())
    raise TrainingError(_failure_message(log_path))
