"""``python -m services.ingestor.merge``: the original's command line, kept where it was; the
command itself is ``services.ingestor.commands.merge``."""

from services.ingestor.commands.merge import main

if __name__ == "__main__":
    raise SystemExit(main())
