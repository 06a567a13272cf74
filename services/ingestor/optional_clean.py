"""``python -m services.ingestor.optional_clean``: the original's command line; the command is
``services.ingestor.commands.optional_clean``."""

from services.ingestor.commands.optional_clean import main

if __name__ == "__main__":
    raise SystemExit(main())
