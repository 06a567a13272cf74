"""Files on disk: streaming readers and writers, safe archive extraction, downloads, which files
of a folder are data, and the quarantine file ``rejected.jsonl``."""
