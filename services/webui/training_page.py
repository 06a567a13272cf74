"""The training tab: datasets (ingest, manifest), fine-tuning jobs (submit, watch, cancel) and
deploying a result. Layout and wiring only; what is shown is computed in ``training.py``."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import pandas as pd

from services.webui.controller_client import ServiceError
from services.webui.management_client import ManagementClient
from services.webui.training import (
    METHODS,
    FormError,
    JobForm,
    dataset_rows,
    histogram_rows,
    job_progress,
    job_request,
    job_rows,
    job_summary,
    loss_rows,
    manifest_markdown,
    progress_html,
    ready_datasets,
)
from shared.datasets import DATASET_SOURCE_KEYS
from shared.settings import WebUISettings, default_model_dir

log = logging.getLogger(__name__)

PROGRESS_CSS = """
.job-progress-track { width: 100%; height: 14px; border-radius: 7px;
  background: var(--neutral-200); overflow: hidden; }
.job-progress-fill { height: 100%; background: var(--color-accent); transition: width 0.5s; }
.job-progress-label { margin-top: 4px; font-size: var(--text-sm); }
"""

DATASET_COLUMNS = ["id", "status", "sources", "samples"]
JOB_COLUMNS = ["id", "status", "method", "base model", "fine-tuned model"]
EMPTY_CURVE = pd.DataFrame({"step": [], "loss": [], "series": []})


def _notice(message: str) -> str:
    return f"⚠️ {message}"


def _curve(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows) if rows else EMPTY_CURVE


def deployment_markdown(record: dict[str, Any] | None) -> str:
    if record is None:
        return ""
    status = record.get("status", "?")
    text = f"Deployment of `{record.get('model')}`: **{status}**"
    if record.get("worker_address"):
        text += f" on {record['worker_address']}"
    if record.get("error"):
        text += f". Error: {record['error']}"
    if status == "deployed":
        text += f". [Chat with it](?model={record.get('model')})"
    return text


def build_training_tab(client: ManagementClient, settings: WebUISettings) -> None:
    base_models = [m.strip() for m in settings.base_models.split(",") if m.strip()] or [
        str(default_model_dir())
    ]

    gr.Markdown("## Datasets")
    with gr.Row():
        with gr.Column(scale=3):
            hub_sources = gr.CheckboxGroup(
                list(DATASET_SOURCE_KEYS), label="Hub datasets (the original's sources)"
            )
            other_sources = gr.Textbox(
                label="Other sources",
                placeholder="http(s) URLs or paths on the server, comma-separated",
            )
            upload = gr.File(
                label="Or upload files (JSON, JSONL, archives)",
                file_count="multiple",
                type="filepath",
                elem_id="dataset-upload",
            )
            ingest_max_length = gr.Number(2048, label="Max tokens per sample", precision=0)
            ingest = gr.Button("Start ingestion", elem_id="start-ingestion")
            ingest_status = gr.Markdown(elem_id="ingest-status")
        with gr.Column(scale=4):
            datasets_table = gr.Dataframe(
                headers=DATASET_COLUMNS, interactive=False, label="Datasets", elem_id="datasets"
            )
            dataset_pick = gr.Dropdown(
                [],
                label="Show dataset",
                interactive=True,
                allow_custom_value=True,
                elem_id="dataset-pick",
            )
            manifest = gr.Markdown(elem_id="manifest")
            histogram = gr.BarPlot(
                x="tokens", y="samples", label="Token lengths", visible=False, sort=None
            )

    gr.Markdown("## Fine-tune")
    with gr.Row():
        base_model = gr.Dropdown(
            base_models,
            value=base_models[0] if base_models else None,
            label="Base model (folder or Hub id)",
            allow_custom_value=True,
            interactive=True,
            elem_id="base-model",
        )
        training_file = gr.Dropdown(
            [],
            label="Dataset (id of a built dataset, or a JSON(L) file on the server)",
            allow_custom_value=True,
            interactive=True,
            elem_id="training-file",
        )
        method = gr.Radio(list(METHODS), value="lora", label="Method")
    with gr.Row():
        n_epochs = gr.Number(3, label="Epochs", minimum=0.01)
        learning_rate = gr.Number(None, label="Learning rate (0: method default)")
        batch_size = gr.Number(4, label="Batch size", precision=0, minimum=1)
        max_length = gr.Number(2048, label="Max length", precision=0, minimum=16)
        max_steps = gr.Number(None, label="Max steps (0: all epochs)", precision=0)
        lora_r = gr.Number(None, label="LoRA r (0: method default)", precision=0)
    with gr.Row():
        suffix = gr.Textbox(label="Name suffix of the result", max_length=64)
        merge = gr.Checkbox(False, label="Merge the adapter into the base model when done")
        submit = gr.Button("Start fine-tuning", variant="primary", elem_id="start-job")
    submit_status = gr.Markdown(elem_id="job-submit-status")

    gr.Markdown("## Jobs")
    with gr.Row():
        job_pick = gr.Dropdown(
            [],
            label="Job",
            interactive=True,
            allow_custom_value=True,
            elem_id="job-pick",
            scale=3,
        )
        cancel = gr.Button("Cancel job", variant="stop", elem_id="cancel-job", scale=1)
        deploy = gr.Button("Deploy result", elem_id="deploy-job", scale=1)
    progress = gr.HTML(progress_html(job_progress({}, [])), elem_id="job-progress")
    summary = gr.Markdown(elem_id="job-summary")
    deployment = gr.Markdown(elem_id="deployment-status")
    curve = gr.LinePlot(
        EMPTY_CURVE,
        x="step",
        y="loss",
        color="series",
        title="Loss",
        label="Loss curve",
        elem_id="loss-curve",
    )
    jobs_table = gr.Dataframe(headers=JOB_COLUMNS, interactive=False, label="Jobs")
    # The model whose deployment this session watches (set by Deploy).
    watched_model = gr.State("")
    # The dropdowns' choices as last sent to this session.
    known_lists = gr.State(())
    timer = gr.Timer(settings.refresh_seconds)

    def refresh_lists(known: tuple[Any, ...]) -> list[Any]:
        """Tables every tick; dropdown choices only when they changed, so that a tick never
        disturbs what the user is picking or typing."""
        try:
            datasets = client.list_datasets()
            jobs = client.list_jobs()
        except ServiceError as exc:
            log.warning("event=training_refresh_failed error=%s", exc)
            return [gr.skip()] * 6
        ids = [d["id"] for d in datasets]
        ready = ready_datasets(datasets)
        job_ids = [j["id"] for j in jobs]
        now = (ids, ready, job_ids)
        dropdowns: list[Any] = [gr.skip()] * 3
        if now != known:
            dropdowns = [gr.Dropdown(choices=c) for c in now]
        return [
            dataset_rows(datasets),
            dropdowns[0],
            dropdowns[1],
            job_rows(jobs),
            dropdowns[2],
            now,
        ]

    def show_dataset(dataset_id: str | None) -> list[Any]:
        if not dataset_id:
            return ["", gr.BarPlot(visible=False)]
        try:
            dataset = client.get_dataset(dataset_id)
        except ServiceError as exc:
            return [_notice(str(exc)), gr.BarPlot(visible=False)]
        rows = histogram_rows(dataset.get("manifest") or {})
        plot = gr.BarPlot(pd.DataFrame(rows), visible=True) if rows else gr.BarPlot(visible=False)
        return [manifest_markdown(dataset), plot]

    def start_ingestion(
        hub: list[str], other: str, files: list[str] | None, max_tokens: float | None
    ) -> list[Any]:
        sources = [*(hub or []), *(s.strip() for s in (other or "").split(",") if s.strip())]
        if not sources and not files:
            return [_notice("Pick a Hub dataset, type a source, or upload a file."), gr.skip()]
        try:
            record = client.create_dataset(
                sources, list(files or []), max_length=int(max_tokens) if max_tokens else None
            )
        except ServiceError as exc:
            return [_notice(str(exc)), gr.skip()]
        log.info("event=dataset_requested id=%s sources=%s", record["id"], record["spec"])
        message = f"Ingestion **{record['id']}** queued."
        return [message, gr.Dropdown(value=record["id"])]

    def submit_job(*values: Any) -> list[Any]:
        (model, data, meth, epochs, lr, batch, length, steps, r, name, do_merge) = values
        try:
            body = job_request(
                JobForm(
                    base_model=model or "",
                    training_file=data or "",
                    method=meth,
                    n_epochs=epochs or 3.0,
                    learning_rate=lr,
                    batch_size=int(batch or 4),
                    max_length=int(length or 2048),
                    max_steps=int(steps) if steps else None,
                    lora_r=int(r) if r else None,
                    suffix=name or "",
                    merge=bool(do_merge),
                )
            )
            job = client.create_job(body)
        except (FormError, ServiceError) as exc:
            return [_notice(str(exc)), gr.skip()]
        log.info("event=job_requested id=%s model=%s", job["id"], job["model"])
        return [
            f"Fine-tuning job **{job['id']}** queued.",
            gr.Dropdown(value=job["id"]),
        ]

    def show_job(job_id: str | None) -> list[Any]:
        if not job_id:
            return [progress_html(job_progress({}, [])), "", EMPTY_CURVE]
        try:
            job = client.get_job(job_id)
            events = client.job_events(job_id)
        except ServiceError as exc:
            return [gr.skip(), _notice(str(exc)), gr.skip()]
        return [
            progress_html(job_progress(job, events)),
            job_summary(job),
            _curve(loss_rows(events)),
        ]

    def cancel_job(job_id: str | None) -> str:
        if not job_id:
            return _notice("Pick a job first.")
        try:
            job = client.cancel_job(job_id)
        except ServiceError as exc:
            return _notice(str(exc))
        return job_summary(job)

    def deploy_result(job_id: str | None) -> list[Any]:
        if not job_id:
            return [_notice("Pick a job first."), ""]
        try:
            job = client.get_job(job_id)
            name = job.get("fine_tuned_model")
            if job.get("status") != "succeeded" or not name:
                return [_notice(f"Job {job_id} has no result to deploy yet."), ""]
            record = client.deploy(name)
        except ServiceError as exc:
            return [_notice(str(exc)), ""]
        return [deployment_markdown(record), name]

    def watch_deployment(name: str) -> Any:
        if not name:
            return gr.skip()
        try:
            return deployment_markdown(client.get_deployment(name))
        except ServiceError as exc:
            return _notice(str(exc))

    lists = [datasets_table, dataset_pick, training_file, jobs_table, job_pick, known_lists]
    dataset_view = [manifest, histogram]
    job_view = [progress, summary, curve]
    form = [
        base_model,
        training_file,
        method,
        n_epochs,
        learning_rate,
        batch_size,
        max_length,
        max_steps,
        lora_r,
        suffix,
        merge,
    ]
    private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}

    ingest.click(
        start_ingestion,
        [hub_sources, other_sources, upload, ingest_max_length],
        [ingest_status, dataset_pick],
        **private,
    ).then(refresh_lists, [known_lists], lists, **private)
    dataset_pick.change(show_dataset, [dataset_pick], dataset_view, **private)
    submit.click(submit_job, form, [submit_status, job_pick], **private).then(
        refresh_lists, [known_lists], lists, **private
    )
    job_pick.change(show_job, [job_pick], job_view, **private)
    cancel.click(cancel_job, [job_pick], [summary], **private)
    deploy.click(deploy_result, [job_pick], [deployment, watched_model], **private)

    timer.tick(refresh_lists, [known_lists], lists, **private)
    timer.tick(show_job, [job_pick], job_view, **private)
    timer.tick(watch_deployment, [watched_model], [deployment], **private)
