"""Runs lm-evaluation-harness tasks on a local model, one task at a time for progress.

Every task (and so every dataset) is loaded before the model, so that a dataset missing offline
fails the run at once, by name, instead of after hours of other tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.evaluator.results import summarize
from shared.evals import EvalRequest
from shared.settings import EvaluatorSettings

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


class EvalError(Exception):
    """A run that cannot proceed, with a message meant for the user."""


@dataclass
class EvalPlan:
    model_path: str
    tasks: list[tuple[str, int | None]]
    limit: int | None = None
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "auto"
    data_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_request(
        cls, request: EvalRequest, model_path: str, settings: EvaluatorSettings
    ) -> EvalPlan:
        """The plan of an evaluation request; ``auto`` device and no data folder fall back to
        the evaluator's settings."""
        return cls(
            model_path=model_path,
            tasks=request.plan(),
            limit=request.limit,
            batch_size=request.batch_size,
            device=settings.device if request.device == "auto" else request.device,
            dtype=request.dtype,
            data_dir=request.data_dir or settings.data_dir or None,
        )


def _data_dir(plan: EvalPlan) -> Path | None:
    if not plan.data_dir:
        return None
    path = Path(plan.data_dir).expanduser()
    if not path.is_dir():
        raise EvalError(f"data folder {path} does not exist")
    return path


def task_manager(names: list[str], data_dir: Path | None) -> Any:
    """The harness's task index: only the data folder's YAMLs when they name every task
    (indexing the thousands of built-in tasks takes seconds), else built-ins plus those."""
    from lm_eval.tasks import TaskManager

    if data_dir is not None:
        local = TaskManager(include_path=str(data_dir), include_defaults=False)
        if all(name in local.task_index for name in names):
            return local
    return TaskManager(include_path=str(data_dir) if data_dir else None)


def _dataset_label(cfg: dict[str, Any]) -> str:
    path, name = cfg.get("dataset_path"), cfg.get("dataset_name")
    return f"{path} ({name})" if name else str(path)


def _offline_hint(cfg: dict[str, Any]) -> str:
    path = cfg.get("dataset_path")
    return (
        f"With no network, copy it on a connected machine (`hf download --repo-type dataset "
        f"{path} --local-dir <data folder>/{path}`) and point EVAL_DATA_DIR or the request's "
        "data_dir at the data folder."
    )


def load_tasks(plan: EvalPlan, manager: Any) -> dict[str, Any]:
    """Task objects by name, datasets loaded; a local copy under the data folder wins."""
    from lm_eval.tasks._yaml_loader import load_yaml

    data_dir = _data_dir(plan)
    loaded: dict[str, Any] = {}
    for name, shots in plan.tasks:
        entry = manager.task_index.get(name)
        if entry is None:
            raise EvalError(f"unknown task {name!r} (not in lm-eval nor in the data folder)")
        if entry.yaml_path is None:
            raise EvalError(f"{name!r} is not a single YAML task; name its subtasks instead")
        cfg = load_yaml(entry.yaml_path, resolve_func=True)
        if "task" not in cfg:
            raise EvalError(f"{name!r} is a group or tag; name its tasks instead")
        local = data_dir / str(cfg.get("dataset_path", "")) if data_dir else None
        if local is not None and cfg.get("dataset_path") and local.is_dir():
            cfg["dataset_path"] = str(local)
        if shots is not None:
            cfg["num_fewshot"] = shots
        try:
            built = manager.load([cfg])["tasks"]
        except (ConnectionError, OSError) as exc:
            raise EvalError(
                f"dataset {_dataset_label(cfg)} of task {name} is not available: {exc}. "
                + _offline_hint(cfg)
            ) from exc
        except Exception as exc:
            from datasets.exceptions import DatasetNotFoundError

            if isinstance(exc, DatasetNotFoundError):
                raise EvalError(
                    f"dataset {_dataset_label(cfg)} of task {name} was not found: {exc}. "
                    + _offline_hint(cfg)
                ) from exc
            raise
        loaded.update(built)
    return loaded


def load_model(plan: EvalPlan) -> Any:
    """lm-eval's ``hf`` backend on the model folder (or Hub id)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    device = plan.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return HFLM(
            pretrained=plan.model_path,
            device=device,
            dtype=plan.dtype,
            batch_size=plan.batch_size,
            **plan.extra,
        )
    except OSError as exc:
        raise EvalError(f"model {plan.model_path} could not be loaded: {exc}") from exc


def run_plan(plan: EvalPlan, progress: Progress | None = None) -> tuple[dict[str, Any], dict]:
    """Evaluate every task of the plan; returns (results table, raw harness output per task).

    ``progress`` gets ``{"completed_tasks", "total_tasks", "current_task", "partial"}`` before
    each task and once at the end.
    """
    import lm_eval

    names = [name for name, _ in plan.tasks]
    manager = task_manager(names, _data_dir(plan))
    tasks = load_tasks(plan, manager)
    lm = load_model(plan)
    raw: dict[str, Any] = {"results": {}, "n-samples": {}, "n-shot": {}, "configs": {}}
    total = len(names)
    for index, name in enumerate(names):
        if progress:
            progress(_progress(index, total, name, raw))
        log.info("event=eval_task_started task=%s index=%d total=%d", name, index + 1, total)
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[tasks[name]],
            task_manager=manager,
            limit=plan.limit,
            bootstrap_iters=0,
            log_samples=False,
        )
        for key in raw:
            raw[key].update((out or {}).get(key, {}))
    if progress:
        progress(_progress(total, total, None, raw))
    return summarize(raw, names), raw


def _progress(done: int, total: int, current: str | None, raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "completed_tasks": done,
        "total_tasks": total,
        "current_task": current,
        "partial": summarize(raw, [n for n in raw["results"]]) if raw["results"] else None,
    }
