"""``python -m services.ingestor.download``: the original's command line, kept where it was; the
command itself is ``services.ingestor.commands.download``."""

from services.ingestor.commands.download import main

if __name__ == "__main__":
    raise SystemExit(main())
