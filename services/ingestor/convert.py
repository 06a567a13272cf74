"""``python -m services.ingestor.convert``: the original's command line, kept where it was; the
command itself is ``services.ingestor.commands.convert``."""

from services.ingestor.commands.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
