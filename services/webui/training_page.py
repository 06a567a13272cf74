"""The training tab: datasets (ingest, manifest), fine-tuning jobs (submit, watch, cancel) and
deploying a result.

Layout here, one builder per section, then the event wiring; what the events do is in
``training_actions.py``, what is shown is computed in ``training.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from services.webui.management_client import ManagementClient
from services.webui.page_parts import PRIVATE, free_choice
from services.webui.training import METHODS
from services.webui.training_actions import EMPTY_CURVE, TrainingActions, empty_progress
from shared.datasets import DATASET_SOURCE_KEYS
from shared.settings import WebUISettings, default_model_dir

PROGRESS_CSS = """
.job-progress-track { width: 100%; height: 14px; border-radius: 7px;
  background: var(--neutral-200); overflow: hidden; }
.job-progress-fill { height: 100%; background: var(--color-accent); transition: width 0.5s; }
.job-progress-label { margin-top: 4px; font-size: var(--text-sm); }
"""

DATASET_COLUMNS = ["id", "status", "sources", "samples"]
JOB_COLUMNS = ["id", "status", "method", "base model", "fine-tuned model"]


@dataclass
class IngestForm:
    hub_sources: gr.CheckboxGroup
    other_sources: gr.Textbox
    upload: gr.File
    max_tokens: gr.Number
    start: gr.Button
    status: gr.Markdown

    def inputs(self) -> list[gr.components.Component]:
        return [self.hub_sources, self.other_sources, self.upload, self.max_tokens]


@dataclass
class DatasetView:
    table: gr.Dataframe
    pick: gr.Dropdown
    manifest: gr.Markdown
    histogram: gr.BarPlot


@dataclass
class FineTuneForm:
    base_model: gr.Dropdown
    training_file: gr.Dropdown
    method: gr.Radio
    n_epochs: gr.Number
    learning_rate: gr.Number
    batch_size: gr.Number
    max_length: gr.Number
    max_steps: gr.Number
    lora_r: gr.Number
    suffix: gr.Textbox
    merge: gr.Checkbox
    submit: gr.Button
    one_call: gr.Button
    status: gr.Markdown

    def inputs(self) -> list[gr.components.Component]:
        """The fields, in the order ``TrainingActions.submit_job`` reads them."""
        return [
            self.base_model,
            self.training_file,
            self.method,
            self.n_epochs,
            self.learning_rate,
            self.batch_size,
            self.max_length,
            self.max_steps,
            self.lora_r,
            self.suffix,
            self.merge,
        ]


@dataclass
class JobsView:
    pick: gr.Dropdown
    cancel: gr.Button
    deploy: gr.Button
    progress: gr.HTML
    summary: gr.Markdown
    deployment: gr.Markdown
    curve: gr.LinePlot
    table: gr.Dataframe

    def outputs(self) -> list[gr.components.Component]:
        """What ``TrainingActions.show_job`` updates."""
        return [self.progress, self.summary, self.curve]


def base_model_choices(settings: WebUISettings) -> list[str]:
    """The configured base models, else the embedded default model."""
    return [m.strip() for m in settings.base_models.split(",") if m.strip()] or [
        str(default_model_dir())
    ]


def build_ingest_form() -> IngestForm:
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
    max_tokens = gr.Number(2048, label="Max tokens per sample", precision=0)
    start = gr.Button("Start ingestion", elem_id="start-ingestion")
    status = gr.Markdown(elem_id="ingest-status")
    return IngestForm(hub_sources, other_sources, upload, max_tokens, start, status)


def build_dataset_view() -> DatasetView:
    table = gr.Dataframe(
        headers=DATASET_COLUMNS, interactive=False, label="Datasets", elem_id="datasets"
    )
    pick = free_choice([], "Show dataset", "dataset-pick")
    manifest = gr.Markdown(elem_id="manifest")
    histogram = gr.BarPlot(x="tokens", y="samples", label="Token lengths", visible=False, sort=None)
    return DatasetView(table, pick, manifest, histogram)


def build_datasets_section() -> tuple[IngestForm, DatasetView]:
    """The ingestion form beside the datasets and the picked one's manifest."""
    gr.Markdown("## Datasets")
    with gr.Row():
        with gr.Column(scale=3):
            form = build_ingest_form()
        with gr.Column(scale=4):
            view = build_dataset_view()
    return form, view


def build_fine_tune_form(base_models: list[str]) -> FineTuneForm:
    gr.Markdown("## Fine-tune")
    with gr.Row():
        base_model = free_choice(
            base_models,
            "Base model (folder or Hub id)",
            "base-model",
            value=base_models[0] if base_models else None,
        )
        training_file = free_choice(
            [],
            "Dataset (id of a built dataset, or a JSON(L) file on the server)",
            "training-file",
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
        one_call = gr.Button(
            "Ingest the sources above, train, merge and deploy", elem_id="one-call-job"
        )
    status = gr.Markdown(elem_id="job-submit-status")
    return FineTuneForm(
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
        submit,
        one_call,
        status,
    )


def build_jobs_section() -> JobsView:
    """The job picker with its actions, then the picked job's progress, summary and curve."""
    gr.Markdown("## Jobs")
    with gr.Row():
        pick = free_choice([], "Job", "job-pick", scale=3)
        cancel = gr.Button("Cancel job", variant="stop", elem_id="cancel-job", scale=1)
        deploy = gr.Button("Deploy result", elem_id="deploy-job", scale=1)
    progress = gr.HTML(empty_progress(), elem_id="job-progress")
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
    table = gr.Dataframe(headers=JOB_COLUMNS, interactive=False, label="Jobs")
    return JobsView(pick, cancel, deploy, progress, summary, deployment, curve, table)


def wire_training_events(
    actions: TrainingActions,
    ingest: IngestForm,
    datasets: DatasetView,
    form: FineTuneForm,
    jobs: JobsView,
    refresh_seconds: float,
) -> None:
    """Buttons and pickers, then the timer that keeps the lists, the job and a deployment live."""
    # The model whose deployment this session watches (set by Deploy).
    watched_model = gr.State("")
    # The dropdowns' choices as last sent to this session.
    known_lists = gr.State(())
    timer = gr.Timer(refresh_seconds)
    lists = [datasets.table, datasets.pick, form.training_file, jobs.table, jobs.pick, known_lists]

    ingest.start.click(
        actions.start_ingestion, ingest.inputs(), [ingest.status, datasets.pick], **PRIVATE
    ).then(actions.refresh_lists, [known_lists], lists, **PRIVATE)
    datasets.pick.change(
        actions.show_dataset, [datasets.pick], [datasets.manifest, datasets.histogram], **PRIVATE
    )
    form.submit.click(actions.submit_job, form.inputs(), [form.status, jobs.pick], **PRIVATE).then(
        actions.refresh_lists, [known_lists], lists, **PRIVATE
    )
    form.one_call.click(
        actions.one_call,
        [ingest.hub_sources, ingest.other_sources, *form.inputs()],
        [form.status, jobs.pick],
        **PRIVATE,
    ).then(actions.refresh_lists, [known_lists], lists, **PRIVATE)
    jobs.pick.change(actions.show_job, [jobs.pick], jobs.outputs(), **PRIVATE)
    jobs.cancel.click(actions.cancel_job, [jobs.pick], [jobs.summary], **PRIVATE)
    jobs.deploy.click(
        actions.deploy_result, [jobs.pick], [jobs.deployment, watched_model], **PRIVATE
    )

    timer.tick(actions.refresh_lists, [known_lists], lists, **PRIVATE)
    timer.tick(actions.show_job, [jobs.pick], jobs.outputs(), **PRIVATE)
    timer.tick(actions.watch_deployment, [watched_model], [jobs.deployment], **PRIVATE)


def build_training_tab(client: ManagementClient, settings: WebUISettings) -> None:
    ingest, datasets = build_datasets_section()
    form = build_fine_tune_form(base_model_choices(settings))
    jobs = build_jobs_section()
    wire_training_events(
        TrainingActions(client), ingest, datasets, form, jobs, settings.refresh_seconds
    )
