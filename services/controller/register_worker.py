"""Register a worker started with ``--no-register``: the controller fetches its status itself.

``python -m services.controller.register_worker --worker-name URL [--check-heart-beat]``

Registration is the worker protocol, so the credential sent is the stack's ``WORKER_TOKEN``
(the environment, else the .env file ``make up`` wrote); without one, ``CONTROLLER_API_KEY``.
"""

from __future__ import annotations

import sys

import httpx

from shared.auth import bearer_header
from shared.cli import SettingsParser
from shared.settings import AuthSettings, ClientSettings


def main(argv: list[str] | None = None) -> int:
    cli = SettingsParser(
        __doc__.split("\n\n")[0], ClientSettings, prog=f"python -m {__spec__.name}"
    )
    cli.parser.add_argument("--worker-name", required=True, help="the worker's base URL")
    cli.parser.add_argument("--check-heart-beat", action="store_true")
    args = cli.parse(argv)
    client = cli.settings(ClientSettings)
    body = {
        "worker_name": args.worker_name,
        "check_heart_beat": args.check_heart_beat,
        "worker_status": None,
    }
    response = httpx.post(
        f"{client.controller_address.rstrip('/')}/register_worker",
        json=body,
        headers=bearer_header(AuthSettings().worker_token or client.controller_api_key),
    )
    if response.status_code != 200:
        print(f"registration failed ({response.status_code}): {response.text}", file=sys.stderr)
        return 1
    print(f"registered {args.worker_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
