"""The models tab: registered workers with their live state, deployments, evaluation results."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.webui.http_client import ServiceError
from services.webui.management_client import ManagementClient, NotAvailable
from services.webui.models import (
    DEPLOYMENT_COLUMNS,
    WORKER_COLUMNS,
    deployment_rows,
    eval_table,
    probe_workers,
    worker_rows,
)
from services.webui.page_parts import PRIVATE, notice
from shared.settings import WebUISettings

log = logging.getLogger(__name__)


# Evaluation results change rarely: fetched on the first tick and every tenth after it.
EVALS_EVERY = 10


@dataclass
class ModelsView:
    workers_status: gr.Markdown
    workers: gr.Dataframe
    deployments: gr.Dataframe
    evals_group: gr.Group
    evals_note: gr.Markdown
    evals: gr.Dataframe


class ModelsActions:
    """The models tab's refreshes, around one management client."""

    def __init__(self, client: ManagementClient) -> None:
        self.client = client

    def refresh_workers(self) -> list[Any]:
        """Outputs: workers status line, workers table."""
        try:
            registered = self.client.list_workers()
        except ServiceError as exc:
            return [notice(str(exc)), gr.skip()]
        rows = worker_rows(registered, probe_workers(self.client, registered))
        note = f"{len(rows)} worker(s) registered." if rows else "No worker is registered."
        return [note, rows]

    def refresh_deployments(self) -> Any:
        """Output: deployments table, hidden where no deployment API (or no deployment) is."""
        try:
            records = self.client.list_deployments()
        except NotAvailable:
            return gr.Dataframe(visible=False)
        except ServiceError as exc:
            log.warning("event=deployments_refresh_failed error=%s", exc)
            return gr.skip()
        return gr.Dataframe(deployment_rows(records), visible=bool(records))

    def refresh_evals(self) -> list[Any]:
        """Shown only where an evaluation service answers. Outputs: group, note, table."""
        try:
            results = self.client.eval_results()
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

    def maybe_refresh_evals(self, n: int) -> list[Any]:
        """``refresh_evals`` on every ``EVALS_EVERY``-th tick ``n``; then the next tick's n."""
        if n % EVALS_EVERY:
            return [gr.skip(), gr.skip(), gr.skip(), n + 1]
        return [*self.refresh_evals(), n + 1]


def build_models_view() -> ModelsView:
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
    return ModelsView(workers_status, workers, deployments, evals_group, evals_note, evals)


def wire_models_events(actions: ModelsActions, view: ModelsView, refresh_seconds: float) -> None:
    """Everything on the tab refreshes on one timer."""
    timer = gr.Timer(refresh_seconds)
    timer.tick(actions.refresh_workers, None, [view.workers_status, view.workers], **PRIVATE)
    timer.tick(actions.refresh_deployments, None, [view.deployments], **PRIVATE)
    ticks = gr.State(0)
    evals = [view.evals_group, view.evals_note, view.evals, ticks]
    timer.tick(actions.maybe_refresh_evals, [ticks], evals, **PRIVATE)


def build_models_tab(client: ManagementClient, settings: WebUISettings) -> None:
    wire_models_events(ModelsActions(client), build_models_view(), settings.refresh_seconds)
