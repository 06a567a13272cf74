"""``python -m services.ingestor.split_long_conversation``: the original's command line; the
command is ``services.ingestor.commands.split_long_conversation``."""

from services.ingestor.commands.split_long_conversation import main

if __name__ == "__main__":
    raise SystemExit(main())
