"""Evaluation jobs: the contract between the controller (``/v1/evals``) and the evaluator.

The ``leaderboard`` task set reproduces the original's Open LLM Leaderboard runs:
ARC-Challenge 25-shot, HellaSwag 10-shot, the 57 MMLU subjects 5-shot, TruthfulQA-MC 0-shot,
named as lm-evaluation-harness 0.4 names them. Pure data: no torch, no harness here.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.paths import AllowedRoots, RefusedReference, written_as_path
from shared.paths import resolve_model as resolve_model_reference
from shared.redis_keys import RedisKeys

EVAL_KIND = "eval"
EvalStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_EVAL_STATUSES = ("succeeded", "failed", "cancelled")

LEADERBOARD = "leaderboard"

MMLU_SUBJECTS = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]

MMLU_PREFIX = "mmlu_"
TRUTHFULQA_TASK = "truthfulqa_mc2"

# Task -> few-shot count, in the order the original's parser printed them.
LEADERBOARD_TASKS: dict[str, int] = {
    "arc_challenge": 25,
    "hellaswag": 10,
    **{f"{MMLU_PREFIX}{subject}": 5 for subject in MMLU_SUBJECTS},
    TRUTHFULQA_TASK: 0,
}


class EvalRequest(BaseModel):
    """Body of ``POST /v1/evals`` (and the CLI's arguments)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1,
        description="a model folder under the allowed folders, a name under MODELS_DIR, or a "
        "Hub id",
    )
    tasks: Literal["leaderboard"] | list[str] = LEADERBOARD
    # One count for every task, or per task; tasks not named keep the set's (or task's) default.
    num_fewshot: int | dict[str, int] | None = None
    limit: int | None = Field(None, ge=1, description="samples per task (for quick runs)")
    batch_size: int = Field(1, ge=1, le=512)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    # A folder with local copies of datasets (<dir>/<hub dataset id>) and extra task YAMLs,
    # under the allowed folders (MODELS_DIR, DATASETS_DIR, JOBS_DIR, IMPORT_DIR).
    data_dir: str | None = None

    @field_validator("tasks")
    @classmethod
    def _tasks_named(cls, tasks: str | list[str]) -> str | list[str]:
        if isinstance(tasks, list):
            if not tasks:
                raise ValueError("give at least one task, or 'leaderboard'")
            if any(not t.strip() for t in tasks):
                raise ValueError("task names must not be empty")
            if len(set(tasks)) != len(tasks):
                raise ValueError("task names must not repeat")
        return tasks

    @field_validator("num_fewshot")
    @classmethod
    def _shots_non_negative(cls, shots: int | dict[str, int] | None) -> Any:
        values = shots.values() if isinstance(shots, dict) else [shots]
        if any(v is not None and v < 0 for v in values):
            raise ValueError("few-shot counts must be >= 0")
        return shots

    @model_validator(mode="after")
    def _shots_name_known_tasks(self) -> EvalRequest:
        if isinstance(self.num_fewshot, dict):
            unknown = sorted(set(self.num_fewshot) - {name for name, _ in self.plan()})
            if unknown:
                raise ValueError(f"num_fewshot names tasks not in the request: {unknown}")
        return self

    def plan(self) -> list[tuple[str, int | None]]:
        """(task, few-shot count) in run order; None keeps the task's own default."""
        if self.tasks == LEADERBOARD:
            base: list[tuple[str, int | None]] = list(LEADERBOARD_TASKS.items())
        else:
            base = [(name.strip(), None) for name in self.tasks]
        if isinstance(self.num_fewshot, int):
            return [(name, self.num_fewshot) for name, _ in base]
        overrides = self.num_fewshot or {}
        return [(name, overrides.get(name, shots)) for name, shots in base]


def resolve_model(model: str, roots: AllowedRoots) -> str:
    """A model folder under the allowed folders, a name under MODELS_DIR, or a Hub id
    (``org/name``) left to the harness (``shared.paths.resolve_model``).

    A name that a model worker serves is evaluated from its folder under MODELS_DIR: the
    harness needs the weights' log-likelihoods, which the worker API does not expose.
    """
    try:
        return resolve_model_reference(model, roots)
    except RefusedReference as exc:
        if "/" in model or written_as_path(model):
            raise
        raise RefusedReference(
            f"{exc}; a model known only to a remote worker cannot be evaluated"
        ) from None


def resolve_data_dir(data_dir: str | None, roots: AllowedRoots) -> str | None:
    """A request's folder of task data: a folder under the allowed folders."""
    if not data_dir:
        return None
    return str(roots.existing(data_dir, "folder"))


def new_eval_id() -> str:
    return f"eval-{uuid.uuid4().hex[:20]}"


def new_eval_record(eval_id: str, request: EvalRequest, model_path: str) -> dict[str, Any]:
    plan = request.plan()
    return {
        "id": eval_id,
        "object": "evaluation",
        "created_at": int(time.time()),
        "model": request.model,
        "model_path": model_path,
        "status": "queued",
        "tasks": [{"task": name, "num_fewshot": shots} for name, shots in plan],
        "limit": request.limit,
        "progress": {"completed_tasks": 0, "total_tasks": len(plan), "current_task": None},
        "results": None,
        "started_at": None,
        "finished_at": None,
        "error": None,
        "request": request.model_dump(),
    }


class ResultsBoard:
    """Latest results per model: one Redis hash ``{prefix}eval_results`` (model -> JSON)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._key = f"{keys.prefix}eval_results"

    def put(self, model: str, entry: dict[str, Any]) -> None:
        self._redis.hset(self._key, model, json.dumps(entry))

    def all(self) -> dict[str, dict[str, Any]]:
        raw = self._redis.hgetall(self._key)
        return {
            (k.decode() if isinstance(k, bytes) else k): json.loads(v)
            for k, v in sorted(raw.items())
        }


def side_by_side(board: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rows of task -> value per model (x100), plus the summary rows, for a comparison table."""
    models = sorted(board)
    tasks: list[str] = []
    for model in models:
        for row in board[model]["results"]["tasks"]:
            if row["task"] not in tasks:
                tasks.append(row["task"])
    values = {
        model: {row["task"]: row["value"] for row in board[model]["results"]["tasks"]}
        for model in models
    }
    rows = [{"task": task, **{m: values[m].get(task) for m in models}} for task in tasks]
    for summary in ("mmlu_average", "leaderboard_average"):
        if any(board[m]["results"].get(summary) is not None for m in models):
            rows.append({"task": summary, **{m: board[m]["results"].get(summary) for m in models}})
    return {"models": models, "rows": rows}
