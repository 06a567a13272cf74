"""camel-chat services; each one starts with ``python -m services.<name>``."""
