"""``python -m services.ingestor <command> ...``: run | download | convert | merge |
clean_sharegpt | optional_clean | split_long_conversation | worker.

``run`` does all stages at once on any mix of dataset keys, local paths and URLs; ``download``,
``convert`` and ``merge`` are the original's three steps; ``worker`` is the service. Each command
is a module of ``commands/`` with a ``HELP`` line and a ``main(argv, prog)``, so a new command is
one module and one line here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from services.ingestor.commands import (
    clean_sharegpt,
    convert,
    download,
    merge,
    optional_clean,
    run,
    split_long_conversation,
    worker,
)

COMMANDS = {
    "run": run,
    "download": download,
    "convert": convert,
    "merge": merge,
    "clean_sharegpt": clean_sharegpt,
    "optional_clean": optional_clean,
    "split_long_conversation": split_long_conversation,
    "worker": worker,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingestor",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<25}{module.HELP}" for name, module in COMMANDS.items())
        + "\n\n`COMMAND --help` lists a command's flags.",
    )
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of the below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's flags")
    args = parser.parse_args(argv)
    command = COMMANDS[args.command]
    return command.main(args.args, prog=f"python -m services.ingestor {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
