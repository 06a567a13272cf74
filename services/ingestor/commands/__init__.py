"""Command lines of the ingestor: ``python -m services.ingestor <command>``, and the original's
``python -m services.ingestor.<download|convert|merge>`` (thin modules that call these)."""
