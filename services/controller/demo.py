"""The whole mission against a running stack, through its public REST API (``make demo``).

One call (``POST /v1/fine_tuning/jobs`` with the CAMEL samples of ``samples/camel`` uploaded,
``merge: true`` and ``deploy: true``) ingests them, LoRA-finetunes the default model, merges the
adapter into the base and deploys the merged model on the model pool; the job succeeds once the
model answers a chat. Then a chat through ``test_message``. Each stage prints its progress.

The samples are uploaded (one archive per folder), so the stack may run anywhere: as local
processes, in containers, on another host. ``--base-model`` is a path as the stack's services
see it (``make demo`` gives the models volume's path when the stack runs in Docker). The key is
``CONTROLLER_API_KEY`` (the environment, else the .env file ``make up`` wrote).
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.controller.test_message import MessageCheckError, send
from shared.auth import bearer_header
from shared.cli import SettingsParser, exit_status
from shared.settings import REPO_ROOT, ClientSettings, default_model_dir

SAMPLES = [REPO_ROOT / "samples/camel/ai_society", REPO_ROOT / "samples/camel/physics"]
# A few minutes of CPU for the 135M default model on the samples.
DEMO_HYPERPARAMETERS: dict[str, Any] = {
    "n_epochs": 3,
    "batch_size": 2,
    "max_length": 512,
    "learning_rate": 3e-4,
    "lora_r": 8,
    "lora_alpha": 16,
    "save_steps": 10,
    "logging_steps": 1,
}

Say = Callable[[str], None]


class DemoError(RuntimeError):
    """A stage failed; the message says which and why."""


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise DemoError(f"{what}: HTTP {response.status_code}: {response.text}")
    return response.json()


def _wait(
    fetch: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = fetch()
        if on_poll is not None:
            on_poll(record)
        if done(record):
            return record
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not finish within {timeout:.0f} s (last: {record})")
        time.sleep(1.0)


def upload_of(source: Path) -> tuple[str, bytes]:
    """(file name, content) to upload: a folder as a .tar.gz of it, a file as it is."""
    if not source.is_dir():
        return source.name, source.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(source, arcname=source.name)
    return f"{source.name}.tar.gz", buffer.getvalue()


STAGE_LINES = {
    "ingest": "[1/5] ingesting the samples (uploaded with the job)",
    "train": "[2/5] LoRA fine-tuning",
    "merge": "[3/5] merging the adapter into the base model",
    "deploy": "[4/5] deploying the merged model; the job succeeds once it answers a chat",
}


def one_call_job(
    client: httpx.Client, base: str, sources: list[Path], hyper: dict[str, Any], say: Say
) -> dict[str, Any]:
    """``POST /v1/fine_tuning/jobs`` with the samples, ``merge`` and ``deploy``: every stage in
    one call; prints each stage as the job reaches it and the events it writes."""
    say(f"one call: POST /v1/fine_tuning/jobs on {base} with {', '.join(s.name for s in sources)}")
    body = {
        "model": base,
        "method": "lora",
        "validation_split": 0.0,
        "hyperparameters": hyper,
        "merge": True,
        "deploy": True,
    }
    files = [("file", upload_of(source)) for source in sources]
    job = _check(
        client.post("/v1/fine_tuning/jobs", data={"job": json.dumps(body)}, files=files),
        "creating the job",
    )
    watcher = StageWatcher(client, job["id"], say)
    record = _wait(
        lambda: _check(client.get(f"/v1/fine_tuning/jobs/{job['id']}"), "reading the job"),
        lambda r: r["status"] in ("succeeded", "failed", "cancelled"),
        3600,
        "the job",
        watcher,
    )
    watcher(record)
    if record["status"] != "succeeded":
        raise DemoError(f"job {record['status']}: {record.get('error')}")
    return record


class StageWatcher:
    """Says each stage once the job reaches it (all of them, in order, even one that came and
    went between two polls) and the events written since the last poll."""

    def __init__(self, client: httpx.Client, job_id: str, say: Say) -> None:
        self._client, self._job_id, self._say = client, job_id, say
        self._said: list[str] = []
        self._seen: set[str] = set()

    def __call__(self, record: dict[str, Any]) -> None:
        stages = list(record.get("stages") or {})
        current = record.get("stage")
        reached = stages[: stages.index(current) + 1] if current in stages else []
        if record["status"] == "succeeded":
            reached = stages
        for name in reached:
            if name not in self._said:
                self._said.append(name)
                self._say(STAGE_LINES.get(name, name))
        self._events()

    def _events(self) -> None:
        path = f"/v1/fine_tuning/jobs/{self._job_id}/events"
        page = self._client.get(path, params={"limit": 100})
        for event in reversed(page.json().get("data", [])):
            if event["id"] in self._seen:
                continue
            self._seen.add(event["id"])
            data = event.get("data") or {}
            if event["type"] == "metrics" and "loss" in data:
                eta = data.get("eta_s")
                self._say(
                    f"      step {data['step']}: loss {data['loss']:.3f}"
                    + (f", eta {eta:.0f} s" if eta is not None else "")
                )
            elif event["type"] == "message":
                self._say(f"      {event['message']}")


def chat(client: httpx.Client, name: str, message: str, say: Say, api_key: str = "") -> str:
    """Through ``test_message``, as a user checks a deployment: controller -> worker stream."""
    say(f"[5/5] asking {name} through test_message")
    deadline = time.monotonic() + 60
    while name not in _check(client.post("/list_models"), "listing models")["models"]:
        if time.monotonic() > deadline:
            raise DemoError(f"{name} never appeared in /list_models")
        time.sleep(1.0)
    try:
        return send(str(client.base_url).rstrip("/"), None, name, message, 0.0, 64, api_key)
    except MessageCheckError as exc:
        raise DemoError(f"chatting: {exc}") from exc


def run_demo(
    controller: str,
    base: str,
    sources: list[Path],
    *,
    hyperparameters: dict[str, Any] | None = None,
    message: str = "How can a small bakery find its break-even revenue?",
    say: Say = print,
    api_key: str = "",
) -> dict[str, Any]:
    """Every stage in order; returns what the test and the caller want to know."""
    headers = bearer_header(api_key)
    with httpx.Client(base_url=controller, timeout=60, headers=headers) as client:
        job = one_call_job(client, base, sources, hyperparameters or DEMO_HYPERPARAMETERS, say)
        name = job["fine_tuned_model"]
        deployment = _check(client.get(f"/v1/models/{name}/deploy"), "reading the deployment")
        say(f"      served by {deployment['worker_address']}")
        reply = chat(client, name, message, say, api_key)
    return {"dataset": job["training_file"], "job": job, "deployment": deployment, "reply": reply}


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    cli = SettingsParser(
        __doc__.split("\n\n")[0], ClientSettings, prog=f"python -m {__spec__.name}"
    )
    cli.parser.add_argument("--base-model", default=str(default_model_dir()))
    args = cli.parse(argv)
    client = cli.settings(ClientSettings)
    started = time.monotonic()

    def demo() -> str:
        address, api_key = client.controller_address, client.controller_api_key
        run_demo(address, args.base_model, SAMPLES, say=_say, api_key=api_key)
        return f"demo finished in {time.monotonic() - started:.0f} s"

    return exit_status(demo, DemoError, httpx.HTTPError, code=1, prefix="demo failed")


if __name__ == "__main__":
    sys.exit(main())
