"""Send one message through the controller and print the streamed reply.

``python -m services.controller.test_message [--model-name NAME] [--message TEXT]``

``--model-name`` may also be the path a worker was started with (``/path/to/model``, as in the
seed's README): it names the model served under the path's last component.

Checks a deployment end to end: the controller lists the model, dispatches to a worker, and the
worker's own conversation template renders the prompt. Everything goes through the controller's
address (the controller relays the template and the stream), so the workers may sit on a network
the client cannot reach, as in compose.yaml; ``--worker-address`` talks to one worker directly.
The key is ``CONTROLLER_API_KEY`` (the environment, else the .env file ``make up`` wrote), sent
as ``Authorization: Bearer <key>``. Exits non-zero when anything fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from shared.auth import bearer_header
from shared.cli import SettingsParser
from shared.contracts import looks_like_path
from shared.conversation import Conversation
from shared.settings import ClientSettings
from shared.worker_protocol import ProtocolError, stream_generate

REGISTRATION_WAIT_SECONDS = 30.0


class MessageCheckError(RuntimeError):
    pass


def served_name(wanted: str, models: list[str]) -> str:
    """The served model ``wanted`` means: itself, or for a path (the seed README's
    ``--model-name /path/to/model``) the name a worker serves it under, its last component."""
    if wanted in models:
        return wanted
    if looks_like_path(wanted):
        name = Path(wanted.rstrip("/")).name
        if name in models:
            print(f"{wanted} is served as {name}")
            return name
    served = ", ".join(sorted(models)) or "none"
    raise MessageCheckError(f"No available workers for {wanted} (served models: {served})")


def pick_model(client: httpx.Client, controller: str, wanted: str | None) -> str:
    models = client.post(f"{controller}/list_models").raise_for_status().json()["models"]
    return choose_model(models, wanted)


def choose_model(models: list[str], wanted: str | None) -> str:
    print(f"Models: {sorted(models)}")
    if wanted:
        return served_name(wanted, models)
    if not models:
        raise MessageCheckError("No models are registered with the controller")
    return sorted(models)[0]


def worker_for(client: httpx.Client, controller: str, model: str) -> str:
    address = client.post(f"{controller}/get_worker_address", json={"model": model}).json()
    if not address.get("address"):
        raise MessageCheckError(f"No available workers for {model}")
    print(f"worker_addr: {address['address']}")
    return address["address"]


def _wait_for_workers(client: httpx.Client, controller: str, seconds: float) -> list[str]:
    """The controller's models, refreshing its workers until it lists one or ``seconds`` pass:
    right after start-up a worker may still be registering, or registering again after
    heartbeats it missed while the machine was busy starting the other services."""
    deadline = time.monotonic() + seconds
    waiting = False
    while True:
        client.post(f"{controller}/refresh_all_workers").raise_for_status()
        models = client.post(f"{controller}/list_models").raise_for_status().json()["models"]
        if models or time.monotonic() >= deadline:
            return models
        if not waiting:
            print(f"No models registered yet; waiting up to {seconds:.0f} s for a worker")
            waiting = True
        time.sleep(1.0)


def _dispatch(client: httpx.Client, controller: str, model: str | None, wait: float) -> str:
    """The model, after refreshing the controller's workers; shows the worker it picks."""
    model = choose_model(_wait_for_workers(client, controller, wait), model)
    worker_for(client, controller, model)
    return model


def _generate_params(client: httpx.Client, server: str, model: str, message: str) -> dict:
    """The serving worker's own conversation template, rendered with one user message.

    ``server`` is the controller (which relays to a worker of ``model``) or a worker."""
    url = f"{server}/worker_get_conv_template"
    template = client.post(url, json={"model": model}).raise_for_status().json()
    conv = Conversation.from_dict(template["conv"])
    conv.append_message(conv.roles[0], message)
    conv.append_message(conv.roles[1], None)
    print(f"{conv.roles[0]}: {message}")
    print(f"{conv.roles[1]}: ", end="", flush=True)
    return {
        "model": model,
        "prompt": conv.get_prompt(),
        "stop": conv.stop_str,
        "stop_token_ids": conv.stop_token_ids,
        "echo": False,
    }


def send(
    controller: str,
    worker: str | None,
    model: str | None,
    message: str,
    temperature: float,
    max_new_tokens: int,
    api_key: str = "",
    wait_seconds: float = REGISTRATION_WAIT_SECONDS,
) -> str:
    """Print the exchange as it streams; return the final reply.

    Without ``worker`` the controller dispatches and relays (after waiting up to
    ``wait_seconds`` for a worker to register); with it, that worker answers."""
    with httpx.Client(timeout=30, headers=bearer_header(api_key)) as client:
        if worker is None:
            model = _dispatch(client, controller, model, wait_seconds)
        elif model is None:
            status = client.post(f"{worker}/worker_get_status").raise_for_status().json()
            model = status["model_names"][0]
        server = worker or controller
        params = _generate_params(client, server, model, message)
        params |= {"temperature": temperature, "max_new_tokens": max_new_tokens}
        shown = ""
        for chunk in stream_generate(client, f"{server}/worker_generate_stream", params):
            if chunk.get("error_code"):
                raise MessageCheckError(f"error {chunk['error_code']}: {chunk['text']}")
            text = chunk["text"].strip()
            print(text[len(shown) :], end="", flush=True)
            shown = text
        print()
        return shown


def main(argv: list[str] | None = None) -> int:
    cli = SettingsParser(
        __doc__.split("\n\n")[0], ClientSettings, prog=f"python -m {__spec__.name}"
    )
    cli.parser.add_argument("--worker-address", help="talk to this worker directly")
    cli.parser.add_argument(
        "--model-name",
        help="a served name or the model's path; default: the first model the controller lists",
    )
    cli.parser.add_argument("--temperature", type=float, default=0.0)
    cli.parser.add_argument("--max-new-tokens", type=int, default=32)
    cli.parser.add_argument("--message", default="Tell me a story with more than 1000 words.")
    cli.parser.add_argument(
        "--wait-seconds",
        type=float,
        default=REGISTRATION_WAIT_SECONDS,
        help="how long to wait for a worker to register when the controller lists no model",
    )
    args = cli.parse(argv)
    client = cli.settings(ClientSettings)
    try:
        send(
            client.controller_address.rstrip("/"),
            args.worker_address.rstrip("/") if args.worker_address else None,
            args.model_name,
            args.message,
            args.temperature,
            args.max_new_tokens,
            client.controller_api_key,
            args.wait_seconds,
        )
    except (MessageCheckError, ProtocolError) as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"\nCould not reach the service: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
