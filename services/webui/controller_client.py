"""The web UI's only way to the serving stack: the controller's and workers' public HTTP APIs.

Every failure is raised as a ``ServiceError`` whose message names the real cause in plain words,
so the chat can show it as is (the original showed "NETWORK ERROR DUE TO HIGH TRAFFIC" for all).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from services.webui.http_client import ControllerUnavailable, HTTPClient, ServiceError, describe
from shared.auth import bearer_header
from shared.conversation import Conversation
from shared.worker_protocol import CLIENT_HEADERS, ProtocolError, stream_generate

log = logging.getLogger(__name__)

__all__ = [
    "ControllerClient",
    "ControllerUnavailable",
    "NoWorkerError",
    "ServiceError",
    "WorkerRejected",
    "WorkerStreamError",
    "WorkerUnavailable",
]

# How long a worker may stay silent (connect, or between two chunks) before the UI gives up.
WORKER_API_TIMEOUT = 100.0
# Controller calls are quick registry reads; a hung controller should not freeze the page long.
CONTROLLER_TIMEOUT = 10.0


class NoWorkerError(ServiceError):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"No worker is serving model '{model}' right now. Pick another model, or start a "
            "worker for it and try again."
        )
        self.model = model


class WorkerUnavailable(ServiceError):
    """The worker could not be connected to, dropped the connection, or stayed silent too long."""

    def __init__(self, worker: str, model: str, detail: str) -> None:
        super().__init__(f"The worker at {worker} serving '{model}' {detail}. Try again.")
        self.worker = worker
        self.model = model


class WorkerRejected(ServiceError):
    """The worker answered with an HTTP error status; its ``text`` says why (e.g. bad input)."""

    def __init__(self, worker: str, text: str, status_code: int | None, error_code: int) -> None:
        if status_code is not None and 400 <= status_code < 500:
            message = f"The worker refused the request: {text}"
        else:
            message = f"The worker at {worker} failed (HTTP {status_code}): {text}"
        super().__init__(message)
        self.worker = worker
        self.status_code = status_code
        self.error_code = error_code


class WorkerStreamError(ServiceError):
    """A chunk with a non-zero ``error_code`` arrived while generating."""

    def __init__(self, text: str, error_code: int) -> None:
        super().__init__(f"The model failed while answering: {text} (error_code {error_code})")
        self.error_code = error_code


class ControllerClient(HTTPClient):
    """What the chat page needs: the model list, a worker per model, its template, its stream.

    The template cache is shared by every session, guarded by a lock.
    """

    def __init__(
        self,
        controller_address: str,
        *,
        worker_timeout: float = WORKER_API_TIMEOUT,
        controller_timeout: float = CONTROLLER_TIMEOUT,
        api_key: str = "",
        http: httpx.Client | None = None,
    ) -> None:
        """``api_key`` goes to the controller and to every worker, as a Bearer token."""
        headers = {**CLIENT_HEADERS, **bearer_header(api_key)}
        super().__init__(controller_address, http or httpx.Client(headers=headers))
        self.worker_timeout = worker_timeout
        self.controller_timeout = controller_timeout
        self._templates: dict[tuple[str, str], Conversation] = {}
        self._lock = threading.Lock()

    def _controller_post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A FastChat route: anything but 200 means the controller is not working."""
        response = self._send("POST", path, json=body, timeout=self.controller_timeout)
        if response.status_code != 200:
            raise ControllerUnavailable(
                self.controller_address, f"{path} answered HTTP {response.status_code}"
            )
        return self._json(response, path)

    def list_models(self) -> list[str]:
        """Names of every model some live worker serves, sorted."""
        return sorted(self._controller_post("/list_models").get("models", []))

    def worker_address(self, model: str) -> str:
        """The worker the controller picks for ``model``; "" when none serves it."""
        return self._controller_post("/get_worker_address", {"model": model}).get("address", "")

    def sampling_defaults(self, model: str) -> dict[str, Any]:
        """The model's own sampling defaults (its generation_config.json, as its worker's
        ``/model_details`` says); empty when no worker answers or the model has none."""
        if not model:
            return {}
        try:
            worker = self.worker_address(model)
            if not worker:
                return {}
            response = self._http.post(
                f"{worker}/model_details", json={"model": model}, timeout=self.controller_timeout
            )
            found = response.json().get("sampling_defaults") if response.status_code == 200 else {}
        except (ServiceError, httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("event=sampling_defaults_failed model=%s error=%r", model, exc)
            return {}
        return found if isinstance(found, dict) else {}

    def conversation_template(self, worker: str, model: str) -> Conversation:
        """A fresh copy of the worker's conversation template, fetched once per (worker, model)."""
        key = (worker, model)
        with self._lock:
            cached = self._templates.get(key)
        if cached is None:
            cached = self._fetch_template(worker, model)
            with self._lock:
                self._templates[key] = cached
        return cached.copy()

    def _fetch_template(self, worker: str, model: str) -> Conversation:
        url = f"{worker}/worker_get_conv_template"
        try:
            response = self._http.post(url, json={"model": model}, timeout=self.controller_timeout)
        except httpx.TimeoutException as exc:
            raise WorkerUnavailable(worker, model, "did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise WorkerUnavailable(
                worker, model, f"could not be reached ({describe(exc)})"
            ) from exc
        if response.status_code != 200:
            raise WorkerRejected(worker, response.text, response.status_code, 0)
        try:
            return Conversation.from_dict(response.json()["conv"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkerRejected(
                worker, f"unreadable conversation template ({exc!r})", response.status_code, 0
            ) from exc

    def forget_worker(self, worker: str) -> None:
        """Drop cached templates of a worker that failed: it may come back with another model."""
        with self._lock:
            for key in [k for k in self._templates if k[0] == worker]:
                del self._templates[key]

    def stream_reply(
        self,
        worker: str,
        model: str,
        conv: Conversation,
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
    ) -> Iterator[str]:
        """Stream the model's answer to ``conv`` (whose last message is the open slot).

        Yields snapshots, each the full reply so far (prompt not echoed).
        """
        params = {
            "model": model,
            "prompt": conv.get_prompt(),
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            # No repetition_penalty / top_k: the worker applies the model's own defaults.
            "stop": conv.stop_str,
            "stop_token_ids": conv.stop_token_ids,
            "echo": False,
        }
        url = f"{worker}/worker_generate_stream"
        try:
            for chunk in stream_generate(self._http, url, params, timeout=self.worker_timeout):
                code = int(chunk.get("error_code", 0) or 0)
                if code != 0:
                    raise WorkerStreamError(str(chunk.get("text", "")), code)
                yield str(chunk.get("text", ""))
        except ProtocolError as exc:
            raise WorkerRejected(worker, str(exc), exc.status_code, exc.error_code) from exc
        except httpx.TimeoutException as exc:
            raise WorkerUnavailable(
                worker, model, f"stayed silent for more than {self.worker_timeout:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            self.forget_worker(worker)
            raise WorkerUnavailable(
                worker, model, f"could not be reached ({describe(exc)})"
            ) from exc
        except json.JSONDecodeError as exc:
            raise WorkerUnavailable(
                worker, model, f"sent an unreadable stream chunk ({exc})"
            ) from exc
