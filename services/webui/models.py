"""What the models page shows: registered workers with their live state, deployments and
evaluation results, computed from the public APIs."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from services.webui.http_client import ServiceError
from services.webui.management_client import ManagementClient

WORKER_COLUMNS = ["model", "address", "health", "queue length", "running batch size"]
DEPLOYMENT_COLUMNS = ["model", "status", "worker", "path", "error"]
RUNNING_GAUGE = "camelchat_running_batch_size"


@dataclass(frozen=True)
class WorkerProbe:
    """One worker's answer to ``/health`` and ``/metrics`` (or why it did not answer)."""

    healthy: bool
    queue_length: int | None = None
    running: int | None = None
    error: str | None = None


def probe_worker(client: ManagementClient, address: str) -> WorkerProbe:
    try:
        health = client.worker_health(address)
    except ServiceError as exc:
        return WorkerProbe(False, error=str(exc))
    running: int | None = None
    try:
        metrics = client.worker_metrics(address)
        if RUNNING_GAUGE in metrics:
            running = int(metrics[RUNNING_GAUGE])
    except ServiceError:
        pass  # remote backends may not export metrics; health is what matters
    queue = health.get("queue_length")
    return WorkerProbe(
        health.get("status") == "ok", queue if isinstance(queue, int) else None, running
    )


def probe_workers(
    client: ManagementClient, workers: list[dict[str, Any]]
) -> dict[str, WorkerProbe]:
    """Probe every worker at once, so one slow worker does not stall the page."""
    addresses = [w["name"] for w in workers]
    if not addresses:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(addresses))) as pool:
        return dict(
            zip(addresses, pool.map(lambda a: probe_worker(client, a), addresses), strict=True)
        )


def _heartbeat_age(worker: dict[str, Any], now: float) -> str:
    if not worker.get("check_heart_beat", True):
        return "registered without heartbeats"
    last = worker.get("last_heart_beat") or 0.0
    return f"heartbeat {max(now - last, 0):.0f} s ago" if last else "no heartbeat yet"


def worker_rows(
    workers: list[dict[str, Any]], probes: dict[str, WorkerProbe], now: float | None = None
) -> list[list[Any]]:
    """One row per worker: model names, address, health, queue length, running batch size.

    Queue length comes from the worker itself when it answers, else from its last heartbeat.
    """
    now = time.time() if now is None else now
    rows = []
    for worker in sorted(workers, key=lambda w: (w.get("model_names") or [""])[0]):
        probe = probes.get(worker["name"])
        if probe is None:
            health = "not probed"
        elif probe.healthy:
            health = f"healthy ({_heartbeat_age(worker, now)})"
        else:
            health = f"unreachable: {probe.error or 'status not ok'}"
        queue = probe.queue_length if probe and probe.queue_length is not None else None
        rows.append(
            [
                ", ".join(worker.get("model_names") or []),
                worker["name"],
                health,
                queue if queue is not None else worker.get("queue_length", 0),
                probe.running if probe and probe.running is not None else "",
            ]
        )
    return rows


def deployment_rows(deployments: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            d.get("model", d.get("id", "")),
            d.get("status", ""),
            d.get("worker_address") or "",
            d.get("path") or "",
            d.get("error") or "",
        ]
        for d in deployments
    ]


def eval_table(body: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of ``GET /v1/evals/results``'s task x model table (scores x100)."""
    table = (body.get("table") if isinstance(body, dict) else None) or {}
    models = list(table.get("models") or [])
    rows = [
        [row.get("task", ""), *(_score(row.get(model)) for model in models)]
        for row in table.get("rows") or []
    ]
    return (["task", *models] if models else []), rows


def _score(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else ("" if value is None else value)
