"""Register a worker started with ``--no-register`` (spec §4.9).

``python -m services.controller.register_worker --worker-name URL [--check-heart-beat]``
The controller fetches the worker's status itself.
"""

from __future__ import annotations

import argparse
import sys

import httpx

from shared.settings import CommonSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--controller-address", default=CommonSettings().controller_address)
    parser.add_argument("--worker-name", required=True, help="the worker's base URL")
    parser.add_argument("--check-heart-beat", action="store_true")
    args = parser.parse_args(argv)
    body = {
        "worker_name": args.worker_name,
        "check_heart_beat": args.check_heart_beat,
        "worker_status": None,
    }
    response = httpx.post(f"{args.controller_address.rstrip('/')}/register_worker", json=body)
    if response.status_code != 200:
        print(f"registration failed ({response.status_code}): {response.text}", file=sys.stderr)
        return 1
    print(f"registered {args.worker_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
