"""Register a worker started with ``--no-register``: the controller fetches its status itself.

``python -m services.controller.register_worker --worker-name URL``

Registering takes the worker token (``WORKER_TOKEN``, or ``--worker-token``), unless this machine
is in the controller's TRUSTED_WORKER_NETWORKS. A worker that does not heartbeat leaves routing
after the controller's heart-beat expiration, so this suits a worker that heartbeats on its own
but was started before its controller, or a FastChat worker.
"""

from __future__ import annotations

import sys

import httpx

from shared.auth import bearer_header
from shared.cli import SettingsParser
from shared.settings import AuthSettings, ClientSettings


def main(argv: list[str] | None = None) -> int:
    cli = SettingsParser(
        __doc__.split("\n\n")[0],
        ClientSettings,
        AuthSettings,
        prog=f"python -m {__spec__.name}",
        fields={"controller_address", "controller_api_key", "worker_token"},
    )
    cli.parser.add_argument("--worker-name", required=True, help="the worker's base URL")
    cli.parser.add_argument(
        "--check-heart-beat", action="store_true", help="kept for FastChat's command line"
    )
    args = cli.parse(argv)
    client = cli.settings(ClientSettings)
    token = cli.settings(AuthSettings).worker_token or client.controller_api_key
    body = {"worker_name": args.worker_name, "check_heart_beat": args.check_heart_beat}
    response = httpx.post(
        f"{client.controller_address.rstrip('/')}/register_worker",
        json=body,
        headers=bearer_header(token),
    )
    if response.status_code != 200:
        print(f"registration failed ({response.status_code}): {response.text}", file=sys.stderr)
        return 1
    print(f"registered {args.worker_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
