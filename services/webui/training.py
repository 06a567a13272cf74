"""What the training page shows, computed from API records: plain data in, plain data out.

Job requests from the form, progress and ETA, the loss curve, and dataset manifests. No Gradio
here, so tests drive it directly.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from typing import Any

from shared.training import TERMINAL_JOB_STATUSES

METHODS = ("lora", "qlora", "full")
# Curve series names (the plot's legend).
TRAIN_SERIES, EVAL_SERIES = "train", "eval"


@dataclass(frozen=True)
class JobForm:
    """The fine-tuning form's fields, as typed (empty strings: the API's default)."""

    base_model: str
    training_file: str
    method: str = "lora"
    n_epochs: float = 3.0
    learning_rate: float | None = None
    batch_size: int = 4
    max_length: int = 2048
    max_steps: int | None = None
    lora_r: int | None = None
    suffix: str = ""
    merge: bool = False
    validation_split: float = 0.02


class FormError(ValueError):
    """A form field the user must fix; ``str(exc)`` names it."""


def job_request(form: JobForm) -> dict[str, Any]:
    """The ``POST /v1/fine_tuning/jobs`` body; the API validates the rest and names bad fields."""
    if not form.base_model.strip():
        raise FormError("Base model: pick or type a model folder or Hub id.")
    if not form.training_file.strip():
        raise FormError("Dataset: pick a built dataset or type the path of a JSON(L) file.")
    hyper: dict[str, Any] = {
        "n_epochs": float(form.n_epochs),
        "batch_size": int(form.batch_size),
        "max_length": int(form.max_length),
    }
    if form.learning_rate:
        hyper["learning_rate"] = float(form.learning_rate)
    if form.max_steps:
        hyper["max_steps"] = int(form.max_steps)
    if form.lora_r and form.method != "full":
        hyper["lora_r"] = int(form.lora_r)
    body: dict[str, Any] = {
        "model": form.base_model.strip(),
        "training_file": form.training_file.strip(),
        "method": form.method,
        "hyperparameters": hyper,
        "merge": bool(form.merge),
        "validation_split": float(form.validation_split),
    }
    if form.suffix.strip():
        body["suffix"] = form.suffix.strip()
    return body


def one_call_request(form: JobForm, sources: list[str]) -> dict[str, Any]:
    """The body that ingests ``sources``, trains, merges (adapters) and deploys in one job."""
    if not sources:
        raise FormError("Sources: pick a Hub dataset or type a source above (uploads: ingest).")
    body = job_request(JobForm(**{**form.__dict__, "training_file": "-"}))
    del body["training_file"]
    return {**body, "sources": sources, "merge": form.method != "full", "deploy": True}


def stages_markdown(job: dict[str, Any]) -> str:
    """One line per stage of a job created with sources or deploy: status, record, progress."""
    stages = job.get("stages") or {}
    lines = []
    for name, stage in stages.items():
        progress = stage.get("progress") or {}
        detail = ", ".join(f"{k} {v}" for k, v in progress.items() if not isinstance(v, dict))
        marker = " (current)" if name == job.get("stage") else ""
        record = f" `{stage['id']}`" if stage.get("id") else ""
        lines.append(f"- {name}{marker}: **{stage.get('status')}**{record} {detail}".rstrip())
    return "\n".join(lines)


def metrics_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``data`` of every metrics event, oldest first."""
    return [e["data"] for e in events if e.get("type") == "metrics" and e.get("data")]


def loss_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points of the loss curve: ``{"step", "loss", "series"}`` for train and eval losses."""
    rows: list[dict[str, Any]] = []
    for data in metrics_of(events):
        step = data.get("step")
        if step is None:
            continue
        if "eval_loss" in data:
            rows.append({"step": step, "loss": float(data["eval_loss"]), "series": EVAL_SERIES})
        elif "loss" in data:
            rows.append({"step": step, "loss": float(data["loss"]), "series": TRAIN_SERIES})
    return rows


@dataclass(frozen=True)
class Progress:
    fraction: float
    step: int | None
    eta_s: float | None
    status: str


def job_progress(job: dict[str, Any], events: list[dict[str, Any]]) -> Progress:
    """How far a job is: step / max_steps when a step cap is set, else epoch / n_epochs.

    Both come from the trainer's metrics events; a succeeded job is complete by definition.
    """
    status = job.get("status", "")
    metrics = metrics_of(events)
    last = metrics[-1] if metrics else {}
    step = last.get("step")
    eta = last.get("eta_s")
    if status == "succeeded":
        return Progress(1.0, step, 0.0, status)
    hyper = job.get("hyperparameters") or {}
    fraction = 0.0
    if last:
        if hyper.get("max_steps"):
            fraction = (step or 0) / hyper["max_steps"]
        elif hyper.get("n_epochs"):
            fraction = float(last.get("epoch") or 0.0) / float(hyper["n_epochs"])
        elif step and eta is not None:
            elapsed = time.time() - float(job.get("started_at") or time.time())
            fraction = elapsed / max(elapsed + eta, 1e-9)
    if status in TERMINAL_JOB_STATUSES:
        eta = None
    return Progress(min(max(fraction, 0.0), 1.0), step, eta, status)


def format_duration(seconds: float) -> str:
    seconds = max(0, math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def progress_html(progress: Progress) -> str:
    """A progress bar with the step, percentage, state and ETA; readable by tests and eyes."""
    percent = round(progress.fraction * 100)
    parts = [progress.status or "no job"]
    if progress.step is not None:
        parts.append(f"step {progress.step}")
    parts.append(f"{percent}%")
    if progress.eta_s is not None and progress.status == "running":
        parts.append(f"ETA {format_duration(progress.eta_s)}")
    label = html.escape(" · ".join(parts))
    return (
        f'<div class="job-progress" data-status="{html.escape(progress.status)}" '
        f'data-fraction="{progress.fraction:.4f}">'
        f'<div class="job-progress-track"><div class="job-progress-fill" '
        f'style="width: {percent}%"></div></div>'
        f'<div class="job-progress-label">{label}</div></div>'
    )


def job_summary(job: dict[str, Any]) -> str:
    """Markdown lines under the progress bar: model, method, result or error."""
    lines = [
        f"**{job['id']}**: {job.get('method', '?')} on `{job.get('model', '?')}`, "
        f"status **{job.get('status', '?')}**"
    ]
    if job.get("stages"):
        lines.append(stages_markdown(job))
    if job.get("fine_tuned_model"):
        lines.append(f"Result: `{job['fine_tuned_model']}`")
    if job.get("error"):
        error = job["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        lines.append(f"Error: {message}")
    if job.get("cancel_requested") and job.get("status") not in TERMINAL_JOB_STATUSES:
        lines.append("Cancel requested: the trainer stops at its next step.")
    return "\n\n".join(lines)


def job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            job["id"],
            job.get("status", ""),
            job.get("method", ""),
            job.get("model", ""),
            job.get("fine_tuned_model") or "",
        ]
        for job in jobs
    ]


def dataset_rows(datasets: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for ds in datasets:
        manifest = ds.get("manifest") or {}
        rows.append(
            [
                ds["id"],
                ds.get("status", ""),
                ", ".join(_short_source(s) for s in (ds.get("spec") or {}).get("sources", [])),
                manifest.get("records", ""),
            ]
        )
    return rows


def _short_source(source: str) -> str:
    return source.rsplit("/", 1)[-1] if "/" in source else source


def ready_datasets(datasets: list[dict[str, Any]]) -> list[str]:
    """Datasets a job can train on: built successfully."""
    return [ds["id"] for ds in datasets if ds.get("status") == "succeeded"]


def histogram_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Bars of the ingestor's token-length histogram: ``{"tokens": "≤N", "samples": count}``."""
    histogram = (manifest.get("token_lengths") or {}).get("histogram") or []
    return [{"tokens": f"≤{b['le']}", "samples": int(b["count"])} for b in histogram]


def manifest_markdown(dataset: dict[str, Any]) -> str:
    """A dataset's state and manifest: counts per stage, dropped by reason, token lengths."""
    lines = [f"### {dataset['id']} ({dataset.get('status', '?')})"]
    sources = (dataset.get("spec") or {}).get("sources", [])
    if sources:
        lines.append("Sources: " + ", ".join(f"`{s}`" for s in sources))
    progress = dataset.get("progress") or {}
    if progress and dataset.get("status") in ("queued", "running"):
        stages = ", ".join(
            f"{name} {p.get('done', 0)}/{p.get('total') if p.get('total') is not None else '?'}"
            for name, p in progress.items()
        )
        lines.append(f"Progress: {stages}")
    if dataset.get("error"):
        error = dataset["error"]
        lines.append(f"Error: {error.get('message') if isinstance(error, dict) else error}")
    manifest = dataset.get("manifest")
    if not manifest:
        if dataset.get("status") in ("queued", "running"):
            lines.append("The manifest appears once the ingestion has finished.")
        return "\n\n".join(lines)
    lines.append(
        f"**{manifest.get('records', 0)}** samples, {manifest.get('rejected', 0)} rejected; "
        f"tokenizer `{manifest.get('tokenizer', '?')}`, max length {manifest.get('max_length')}"
    )
    stages = manifest.get("stages") or {}
    if stages:
        table = ["| stage | in | kept | dropped |", "|---|---:|---:|---:|"]
        for name, counts in stages.items():
            dropped = sum((counts.get("dropped") or {}).values())
            table.append(
                f"| {name} | {counts.get('in', '')} | {counts.get('kept', '')} | {dropped} |"
            )
        lines.append("\n".join(table))
    reasons = manifest.get("dropped_by_reason") or {}
    if reasons:
        table = ["| dropped because | samples |", "|---|---:|"]
        table += [f"| {reason} | {count} |" for reason, count in reasons.items()]
        lines.append("\n".join(table))
    else:
        lines.append("Nothing was dropped.")
    lengths = manifest.get("token_lengths") or {}
    stats = [k for k in ("min", "median", "mean", "p95", "max") if lengths.get(k) is not None]
    if stats:
        lines.append("Token lengths: " + ", ".join(f"{k} {lengths[k]}" for k in stats))
    return "\n\n".join(lines)
