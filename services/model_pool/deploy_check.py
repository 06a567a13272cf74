"""The deploy stage's last step (``shared/pipeline.py``): a fine-tuning job that deploys its
model succeeds only once that model answers a chat.

When a deployment that names a job is up, the pool asks the controller for one chat completion
of the model, as a user would (the worker token is a caller's credential there), in a thread of
its own so that the pool's passes and heartbeat go on. The model may not be listed yet when its
worker first answers (it registers meanwhile): the check retries until ``timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import redis

from shared import pipeline
from shared.auth import bearer_header
from shared.job_records import EventLog, RecordStore
from shared.redis_keys import RedisKeys
from shared.training import JOB_KIND

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
CHAT_TIMEOUT_SECONDS = 120.0


class DeployChecks:
    """Starts one check per deployed model that a job waits for, and ends that job."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        controller: str,
        worker_token: str,
        timeout: float,
    ) -> None:
        self.jobs = RecordStore(client, keys, JOB_KIND)
        self.events = EventLog(client, keys, JOB_KIND)
        self._controller = controller.rstrip("/")
        self._headers = bearer_header(worker_token)
        self._timeout = timeout
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def start(self, deployment: dict[str, Any]) -> None:
        name = deployment["id"]
        with self._lock:
            if name in self._running:
                return
            self._running.add(name)
        pipeline.deployment_progress(self.jobs, deployment)
        thread = threading.Thread(target=self._check, args=(deployment,), daemon=True,
                                  name=f"deploy-check-{name}")  # fmt: skip
        thread.start()

    def fail(self, deployment: dict[str, Any], message: str) -> None:
        self._end(deployment, {"status": "failed", "message": message,
                               "error": {"code": "deploy_failed", "message": message,
                                         "param": None}})  # fmt: skip

    def _end(self, deployment: dict[str, Any], outcome: dict[str, Any]) -> None:
        holder = f"{pipeline.DEPLOY_PREFIX}{deployment['id']}"
        job_id = deployment["job_id"]
        if pipeline.end_job(self.jobs, self.events, job_id, holder, "deploy", outcome):
            log.info("event=deploy_stage_done job=%s status=%s", job_id, outcome["status"])

    def _check(self, deployment: dict[str, Any]) -> None:
        name = deployment["id"]
        try:
            reply, problem = self._ask(name)
            if reply is not None:
                progress = {"status": "answered", "reply": reply}
                pipeline.set_stage(self.jobs, deployment["job_id"], "deploy", progress=progress)
                message = f"{name} answered a chat: {reply!r}. The job has successfully completed."
                self._end(deployment, {"status": "succeeded", "message": message})
            else:
                self.fail(deployment, f"{name} did not answer a chat: {problem}")
        finally:
            with self._lock:
                self._running.discard(name)

    def _ask(self, name: str) -> tuple[str | None, str]:
        """The model's reply through the controller, or None and the last problem seen."""
        body = {
            "model": name,
            "messages": [{"role": "user", "content": pipeline.CHECK_PROMPT}],
            "max_tokens": 32,
            "temperature": 0.0,
        }
        deadline = time.monotonic() + self._timeout
        problem = "no answer"
        with httpx.Client(timeout=CHAT_TIMEOUT_SECONDS, headers=self._headers) as client:
            while time.monotonic() < deadline:
                try:
                    answer = client.post(f"{self._controller}/v1/chat/completions", json=body)
                    if answer.status_code == 200:
                        # An answer, even an empty one (a tiny or barely trained model may stop
                        # at once): the model is served end to end.
                        return str(answer.json()["choices"][0]["message"]["content"]), ""
                    else:
                        problem = f"HTTP {answer.status_code}: {answer.text[:300]}"
                except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                time.sleep(RETRY_SECONDS)
        return None, problem
