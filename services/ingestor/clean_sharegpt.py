"""``python -m services.ingestor.clean_sharegpt``: the original's command line; the command is
``services.ingestor.commands.clean_sharegpt``."""

from services.ingestor.commands.clean_sharegpt import main

if __name__ == "__main__":
    raise SystemExit(main())
