"""What the training tab's events do: each takes its inputs' values and returns its outputs'
updates. No layout here (``training_page.py``) and no view logic (``training.py``)."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import pandas as pd

from services.webui.http_client import ServiceError
from services.webui.management_client import ManagementClient
from services.webui.page_parts import notice
from services.webui.training import (
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

log = logging.getLogger(__name__)

# Typed columns: an untyped empty "series" is numbers to Gradio, which then draws a colour
# gradient legend from Infinity to -Infinity over the empty plot.
EMPTY_CURVE = pd.DataFrame(
    {
        "step": pd.Series(dtype="int64"),
        "loss": pd.Series(dtype="float64"),
        "series": pd.Series(dtype="string"),
    }
)


def _curve(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows) if rows else EMPTY_CURVE


def empty_progress() -> str:
    """The progress bar of no job."""
    return progress_html(job_progress({}, []))


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


def _form_of(values: tuple[Any, ...]) -> JobForm:
    """The fine-tuning form's values, in its inputs' order; blanks become the defaults."""
    (model, data, meth, epochs, lr, batch, length, steps, r, name, do_merge) = values
    return JobForm(
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


class TrainingActions:
    """The training tab's event handlers, around one management client."""

    def __init__(self, client: ManagementClient) -> None:
        self.client = client

    def refresh_lists(self, known: tuple[Any, ...]) -> list[Any]:
        """Tables every tick; dropdown choices only when they changed, so that a tick never
        disturbs what the user is picking or typing.

        Outputs: datasets table, dataset pick, training file, jobs table, job pick, known lists.
        """
        try:
            datasets = self.client.list_datasets()
            jobs = self.client.list_jobs()
        except ServiceError as exc:
            log.warning("event=training_refresh_failed error=%s", exc)
            return [gr.skip()] * 6
        now = ([d["id"] for d in datasets], ready_datasets(datasets), [j["id"] for j in jobs])
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

    def show_dataset(self, dataset_id: str | None) -> list[Any]:
        """Outputs: manifest, histogram."""
        if not dataset_id:
            return ["", gr.BarPlot(visible=False)]
        try:
            dataset = self.client.get_dataset(dataset_id)
        except ServiceError as exc:
            return [notice(str(exc)), gr.BarPlot(visible=False)]
        rows = histogram_rows(dataset.get("manifest") or {})
        plot = gr.BarPlot(pd.DataFrame(rows), visible=True) if rows else gr.BarPlot(visible=False)
        return [manifest_markdown(dataset), plot]

    def start_ingestion(
        self, hub: list[str], other: str, files: list[str] | None, max_tokens: float | None
    ) -> list[Any]:
        """Outputs: ingestion status, dataset pick (the new dataset)."""
        sources = [*(hub or []), *(s.strip() for s in (other or "").split(",") if s.strip())]
        if not sources and not files:
            return [notice("Pick a Hub dataset, type a source, or upload a file."), gr.skip()]
        try:
            record = self.client.create_dataset(
                sources, list(files or []), max_length=int(max_tokens) if max_tokens else None
            )
        except ServiceError as exc:
            return [notice(str(exc)), gr.skip()]
        log.info("event=dataset_requested id=%s sources=%s", record["id"], record["spec"])
        return [f"Ingestion **{record['id']}** queued.", gr.Dropdown(value=record["id"])]

    def submit_job(self, *values: Any) -> list[Any]:
        """Inputs: the fine-tuning form's fields. Outputs: submit status, job pick (the new job)."""
        try:
            job = self.client.create_job(job_request(_form_of(values)))
        except (FormError, ServiceError) as exc:
            return [notice(str(exc)), gr.skip()]
        log.info("event=job_requested id=%s model=%s", job["id"], job["model"])
        return [f"Fine-tuning job **{job['id']}** queued.", gr.Dropdown(value=job["id"])]

    def show_job(self, job_id: str | None) -> list[Any]:
        """Outputs: progress bar, summary, loss curve."""
        if not job_id:
            return [empty_progress(), "", EMPTY_CURVE]
        try:
            job = self.client.get_job(job_id)
            events = self.client.job_events(job_id)
        except ServiceError as exc:
            return [gr.skip(), notice(str(exc)), gr.skip()]
        return [
            progress_html(job_progress(job, events)),
            job_summary(job),
            _curve(loss_rows(events)),
        ]

    def cancel_job(self, job_id: str | None) -> str:
        """Output: the job's summary."""
        if not job_id:
            return notice("Pick a job first.")
        try:
            job = self.client.cancel_job(job_id)
        except ServiceError as exc:
            return notice(str(exc))
        return job_summary(job)

    def deploy_result(self, job_id: str | None) -> list[Any]:
        """Outputs: deployment status, the model whose deployment to watch."""
        if not job_id:
            return [notice("Pick a job first."), ""]
        try:
            job = self.client.get_job(job_id)
            name = job.get("fine_tuned_model")
            if job.get("status") != "succeeded" or not name:
                return [notice(f"Job {job_id} has no result to deploy yet."), ""]
            record = self.client.deploy(name)
        except ServiceError as exc:
            return [notice(str(exc)), ""]
        return [deployment_markdown(record), name]

    def watch_deployment(self, name: str) -> Any:
        """Output: deployment status."""
        if not name:
            return gr.skip()
        try:
            return deployment_markdown(self.client.get_deployment(name))
        except ServiceError as exc:
            return notice(str(exc))
