"""Measure a running stack's generation throughput with N concurrent requests.

``python -m services.controller.test_throughput [--model-name NAME] [--n-thread 8]
[--max-new-tokens 2048] [--test-dispatch] [--worker-address URL]``

The seed's tool, working: one prompt (the served model's own conversation template with the user
message "Tell me a story with more than 1000 words." and an open reply slot), sent by
``--n-thread`` threads at once to ``/worker_generate_stream`` with temperature 0, each reading its
whole stream. By default the requests go through the controller, which dispatches each one;
``--test-dispatch`` asks the controller for a worker per thread (printing ``thread i goes to
<address>``) and posts to that worker directly, as the seed did; ``--worker-address`` uses one
worker. Generated tokens are the workers' ``usage.completion_tokens`` (words, as the seed
counted, are printed too). Prints ``Time (POST)``, ``Time (Completion)`` and the throughput in
tokens/s; exits non-zero when any request fails.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import httpx

from services.controller.test_message import (
    MessageCheckError,
    pick_model,
    worker_for,
)
from shared.auth import bearer_header
from shared.cli import SettingsParser
from shared.conversation import Conversation
from shared.settings import ClientSettings
from shared.worker_protocol import ProtocolError, iter_chunks

MESSAGE = "Tell me a story with more than 1000 words."


@dataclass
class Outcome:
    tokens: int = 0
    words: int = 0
    error: str = ""


def build_params(client: httpx.Client, controller: str, model: str, max_new_tokens: int) -> dict:
    """The served model's template (relayed by the controller) rendered with MESSAGE."""
    answer = client.post(f"{controller}/worker_get_conv_template", json={"model": model})
    conv = Conversation.from_dict(answer.raise_for_status().json()["conv"])
    conv.append_message(conv.roles[0], MESSAGE)
    conv.append_message(conv.roles[1], None)
    return {
        "model": model,
        "prompt": conv.get_prompt(),
        "temperature": 0.0,
        "max_new_tokens": max_new_tokens,
        "stop": conv.stop_str,
        "stop_token_ids": conv.stop_token_ids,
        "echo": False,
    }


def run_one(client: httpx.Client, url: str, params: dict, outcome: Outcome) -> None:
    """One request, read to its end; the last snapshot gives the text and the token count."""
    last: dict = {}
    try:
        with client.stream("POST", url, json=params) as response:
            if response.status_code != 200:
                outcome.error = f"HTTP {response.status_code}: {response.read()[:200]!r}"
                return
            for chunk in iter_chunks(response.iter_bytes()):
                if chunk.get("error_code"):
                    outcome.error = f"error {chunk['error_code']}: {chunk.get('text')}"
                    return
                last = chunk
    except (httpx.HTTPError, ValueError) as exc:
        outcome.error = repr(exc)
        return
    text = str(last.get("text") or "")
    outcome.words = len(text.split())
    outcome.tokens = int((last.get("usage") or {}).get("completion_tokens") or 0)


def targets(
    client: httpx.Client, controller: str, worker: str | None, model: str, n: int, dispatch: bool
) -> list[str]:
    """Where each thread posts: the controller's relay, one worker, or (--test-dispatch) the
    worker the controller picks for that thread."""
    if worker:
        return [f"{worker}/worker_generate_stream"] * n
    if not dispatch:
        return [f"{controller}/worker_generate_stream"] * n
    urls = []
    for i in range(n):
        address = worker_for(client, controller, model)
        print(f"thread {i} goes to {address}")
        urls.append(f"{address}/worker_generate_stream")
    return urls


def measure(client: httpx.Client, urls: list[str], params: dict) -> list[Outcome]:
    outcomes = [Outcome() for _ in urls]
    threads = [
        threading.Thread(target=run_one, args=(client, url, params, outcome))
        for url, outcome in zip(urls, outcomes, strict=True)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    print(f"Time (POST): {time.perf_counter() - start:.3f} s")
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    tokens = sum(o.tokens for o in outcomes)
    words = sum(o.words for o in outcomes)
    print(
        f"Time (Completion): {elapsed:.3f} s, n threads: {len(urls)}, throughput: "
        f"{tokens / elapsed:.2f} tokens/s ({tokens} tokens; {words / elapsed:.2f} words/s)"
    )
    return outcomes


def main(argv: list[str] | None = None) -> int:
    cli = SettingsParser(
        __doc__.split("\n\n")[0], ClientSettings, prog=f"python -m {__spec__.name}"
    )
    add = cli.parser.add_argument
    add("--worker-address", help="post every request to this worker")
    add("--model-name", help="a served name or the model's path; default: the first listed")
    add("--max-new-tokens", type=int, default=2048)
    add("--n-thread", type=int, default=8)
    add("--test-dispatch", action="store_true", help="ask the controller for a worker per thread")
    args = cli.parse(argv)
    if args.n_thread < 1 or args.max_new_tokens < 1:
        cli.parser.error("--n-thread and --max-new-tokens must be at least 1")
    settings = cli.settings(ClientSettings)
    controller = settings.controller_address.rstrip("/")
    worker = args.worker_address.rstrip("/") if args.worker_address else None
    headers = bearer_header(settings.controller_api_key)
    try:
        with httpx.Client(timeout=httpx.Timeout(30, read=None), headers=headers) as client:
            model = pick_model(client, controller, args.model_name)
            params = build_params(client, controller, model, args.max_new_tokens)
            urls = targets(client, controller, worker, model, args.n_thread, args.test_dispatch)
            outcomes = measure(client, urls, params)
    except (MessageCheckError, ProtocolError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"Could not reach the service: {exc!r}", file=sys.stderr)
        return 1
    failed = [o.error for o in outcomes if o.error]
    for error in failed:
        print(f"request failed: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
