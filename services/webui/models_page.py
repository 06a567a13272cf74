"""The models tab: registered workers with their live state, deployments, evaluation results."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from services.webui.controller_client import ServiceError
from services.webui.management_client import ManagementClient, NotAvailable
from services.webui.models import (
    DEPLOYMENT_COLUMNS,
    WORKER_COLUMNS,
    deployment_rows,
    eval_table,
    probe_workers,
    worker_rows,
)
from shared.settings import WebUISettings

log = logging.getLogger(__name__)


def build_models_tab(client: ManagementClient, settings: WebUISettings) -> None:
    workers_status = gr.Markdown(elem_id="workers-status")
    workers = gr.Dataframe(
        headers=WORKER_COLUMNS, interactive=False, label="Workers", elem_id="workers"
    )
    deployments = gr.Dataframe(
        headers=DEPLOYMENT_COLUMNS,
        interactive=False,
        label="Deployments",
        elem_id="deployments",
        visible=False,
    )
    with gr.Group(visible=False) as evals_group:
        gr.Markdown("### Evaluation results")
        evals_note = gr.Markdown()
        evals = gr.Dataframe(interactive=False, label="Evaluations", elem_id="evals")
    timer = gr.Timer(settings.refresh_seconds)

    def refresh_workers() -> list[Any]:
        try:
            registered = client.list_workers()
        except ServiceError as exc:
            return [f"⚠️ {exc}", gr.skip()]
        rows = worker_rows(registered, probe_workers(client, registered))
        note = f"{len(rows)} worker(s) registered." if rows else "No worker is registered."
        return [note, rows]

    def refresh_deployments() -> Any:
        try:
            records = client.list_deployments()
        except NotAvailable:
            return gr.Dataframe(visible=False)
        except ServiceError as exc:
            log.warning("event=deployments_refresh_failed error=%s", exc)
            return gr.skip()
        return gr.Dataframe(deployment_rows(records), visible=bool(records))

    def refresh_evals() -> list[Any]:
        """Shown only where an evaluation service answers."""
        try:
            results = client.eval_results()
        except ServiceError:
            return [gr.Group(visible=False), gr.skip(), gr.skip()]
        columns, rows = eval_table(results)
        if not columns:
            return [
                gr.Group(visible=True),
                "No evaluation results yet.",
                gr.Dataframe(visible=False),
            ]
        return [gr.Group(visible=True), "", gr.Dataframe(rows, headers=columns, visible=True)]

    private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    timer.tick(refresh_workers, None, [workers_status, workers], **private)
    timer.tick(refresh_deployments, None, [deployments], **private)
    # Results change rarely: on page load and every tenth tick is enough.
    ticks = gr.State(0)

    def maybe_refresh_evals(n: int) -> list[Any]:
        if n % 10:
            return [gr.skip(), gr.skip(), gr.skip(), n + 1]
        return [*refresh_evals(), n + 1]

    timer.tick(maybe_refresh_evals, [ticks], [evals_group, evals_note, evals, ticks], **private)
