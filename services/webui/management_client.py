"""The controller's management APIs as the training and models pages use them: one method per call.

``/v1/datasets``, ``/v1/fine_tuning/jobs``, ``/v1/models/{name}/deploy``, ``/v1/deployments``,
``/v1/merges``, ``/v1/evals/results`` and ``/list_workers``, plus each worker's public ``/health``
and ``/metrics``. Failures are raised as ``ServiceError`` with the API's own message (the /v1
routes answer OpenAI's error shape, which names the field at fault).
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from services.webui.http_client import HTTPClient, ServiceError, describe
from shared.auth import bearer_header

log = logging.getLogger(__name__)

TIMEOUT = 10.0
# Worker probes on the models page: a worker that needs longer than this is shown as unhealthy.
PROBE_TIMEOUT = 2.0


class APIRefused(ServiceError):
    """The controller answered with an error status; the message is its own explanation."""

    def __init__(self, status_code: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.param = param


class NotAvailable(ServiceError):
    """The route does not exist on this controller (a feature not deployed here)."""


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip() or f"HTTP {response.status_code}"), None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"]), error.get("param")
    if isinstance(body, dict) and body.get("detail"):
        return str(body["detail"]), None
    if isinstance(body, dict) and body.get("text"):
        return str(body["text"]), None
    return f"HTTP {response.status_code}: {response.text[:300]}", None


class ManagementClient(HTTPClient):
    """One method per management call; the ``/v1`` routes' errors come back as ``APIRefused``."""

    def __init__(
        self,
        controller_address: str,
        *,
        api_key: str = "",
        timeout: float = TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        headers = bearer_header(api_key)
        super().__init__(controller_address, http or httpx.Client(headers=headers, timeout=timeout))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 404 and not _is_api_error(response):
            raise NotAvailable(f"{path} is not served by the controller at this address")
        if response.status_code == 405:
            raise NotAvailable(f"{method} {path} is not served by the controller")
        if response.status_code >= 400:
            message, param = _error_message(response)
            raise APIRefused(response.status_code, message, param)
        return self._json(response, path)

    def _probe(self, worker: str, route: str) -> httpx.Response:
        """A worker's own public route, with the short probe timeout."""
        try:
            response = self._http.get(f"{worker}{route}", timeout=PROBE_TIMEOUT)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServiceError(f"{worker}{route}: {describe(exc)}") from exc
        return response

    # Workers -------------------------------------------------------------------------------

    def list_workers(self) -> list[dict[str, Any]]:
        return self._call("GET", "/list_workers").get("workers", [])

    def worker_health(self, worker: str) -> dict[str, Any]:
        """The worker's own ``/health`` (status and queue length)."""
        response = self._probe(worker, "/health")
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceError(f"{worker}/health: {describe(exc)}") from exc

    def worker_metrics(self, worker: str) -> dict[str, float]:
        """Gauges and counters of the worker's Prometheus ``/metrics``, by sample name."""
        from prometheus_client.parser import text_string_to_metric_families

        response = self._probe(worker, "/metrics")
        values: dict[str, float] = {}
        try:
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
        except ValueError as exc:
            raise ServiceError(f"{worker}/metrics: unreadable ({exc})") from exc
        return values

    # Datasets ------------------------------------------------------------------------------

    def list_datasets(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/datasets", params={"limit": limit})["data"]

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/datasets/{dataset_id}")

    def create_dataset(
        self, sources: list[str], files: list[Path] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Start an ingestion of ``sources`` (Hub keys, URLs, server paths) and uploaded files."""
        options = {k: v for k, v in options.items() if v not in (None, "")}
        if not files:
            return self._call("POST", "/v1/datasets", json={"sources": sources, **options})
        form = {"sources": json.dumps(sources), **{k: str(v) for k, v in options.items()}}
        with ExitStack() as stack:
            uploads = [
                ("file", (Path(f).name, stack.enter_context(Path(f).open("rb")))) for f in files
            ]
            return self._call("POST", "/v1/datasets", data=form, files=uploads)

    def cancel_dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/datasets/{dataset_id}/cancel")

    # Fine-tuning jobs ----------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/fine_tuning/jobs", json=body)

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/fine_tuning/jobs", params={"limit": limit})["data"]

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/fine_tuning/jobs/{job_id}")

    def job_events(self, job_id: str, max_pages: int = 50) -> list[dict[str, Any]]:
        """Every event of the job, oldest first (the API pages newest first)."""
        events: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(max_pages):
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            page = self._call("GET", f"/v1/fine_tuning/jobs/{job_id}/events", params=params)
            events.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                break
            after = page["data"][-1]["id"]
        return list(reversed(events))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")

    # Merges, deployments, evaluations ------------------------------------------------------

    def list_merges(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/merges")["data"]

    def deploy(self, model: str, path: str | None = None) -> dict[str, Any]:
        body = {"path": path} if path else None
        return self._call("POST", f"/v1/models/{model}/deploy", json=body)

    def get_deployment(self, model: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/models/{model}/deploy")

    def list_deployments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/deployments")["data"]

    def undeploy(self, model: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/models/{model}/deploy")

    def eval_results(self) -> dict[str, Any]:
        """``{"models": {...}, "table": {"models", "rows"}}``: each model's latest evaluation and
        a task x model table; raises ``NotAvailable`` where no evaluation API is deployed."""
        return self._call("GET", "/v1/evals/results")


def _is_api_error(response: httpx.Response) -> bool:
    """A 404 from a route that exists (unknown id) carries OpenAI's error object; an unknown
    route answers FastAPI's ``{"detail": "Not Found"}``."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)
