"""Send one message through the controller and print the streamed reply (spec §4.7).

``python -m services.controller.test_message [--model-name NAME] [--message TEXT]``

Checks a deployment end to end: the controller lists the model, dispatches to a worker, and the
worker's own conversation template renders the prompt. Exits non-zero when anything fails.
"""

from __future__ import annotations

import argparse
import sys

import httpx

from shared.conversation import Conversation
from shared.settings import CommonSettings
from shared.worker_protocol import ProtocolError, stream_generate


class MessageCheckError(RuntimeError):
    pass


def pick_model(client: httpx.Client, controller: str, wanted: str | None) -> str:
    models = client.post(f"{controller}/list_models").raise_for_status().json()["models"]
    print(f"Models: {sorted(models)}")
    if wanted:
        if wanted not in models:
            raise MessageCheckError(f"No available workers for {wanted}")
        return wanted
    if not models:
        raise MessageCheckError("No models are registered with the controller")
    return sorted(models)[0]


def worker_for(client: httpx.Client, controller: str, model: str) -> str:
    address = client.post(f"{controller}/get_worker_address", json={"model": model}).json()
    if not address.get("address"):
        raise MessageCheckError(f"No available workers for {model}")
    print(f"worker_addr: {address['address']}")
    return address["address"]


def send(
    controller: str,
    worker: str | None,
    model: str | None,
    message: str,
    temperature: float,
    max_new_tokens: int,
) -> str:
    """Print the exchange as it streams; return the final reply."""
    with httpx.Client(timeout=30) as client:
        if worker is None:
            client.post(f"{controller}/refresh_all_workers").raise_for_status()
            model = pick_model(client, controller, model)
            worker = worker_for(client, controller, model)
        elif model is None:
            status = client.post(f"{worker}/worker_get_status").raise_for_status().json()
            model = status["model_names"][0]
        template = client.post(f"{worker}/worker_get_conv_template").raise_for_status().json()
        conv = Conversation.from_dict(template["conv"])
        conv.append_message(conv.roles[0], message)
        conv.append_message(conv.roles[1], None)
        params = {
            "model": model,
            "prompt": conv.get_prompt(),
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "stop": conv.stop_str,
            "stop_token_ids": conv.stop_token_ids,
            "echo": False,
        }
        print(f"{conv.roles[0]}: {message}")
        print(f"{conv.roles[1]}: ", end="", flush=True)
        shown = ""
        for chunk in stream_generate(client, f"{worker}/worker_generate_stream", params):
            if chunk.get("error_code"):
                raise MessageCheckError(f"error {chunk['error_code']}: {chunk['text']}")
            text = chunk["text"].strip()
            print(text[len(shown) :], end="", flush=True)
            shown = text
        print()
        return shown


def main(argv: list[str] | None = None) -> int:
    common = CommonSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--controller-address", default=common.controller_address)
    parser.add_argument("--worker-address", help="talk to this worker directly")
    parser.add_argument("--model-name", help="default: the first model the controller lists")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--message", default="Tell me a story with more than 1000 words.")
    args = parser.parse_args(argv)
    try:
        send(
            args.controller_address.rstrip("/"),
            args.worker_address.rstrip("/") if args.worker_address else None,
            args.model_name,
            args.message,
            args.temperature,
            args.max_new_tokens,
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
