"""The gateway: nginx in front of the web UI and the public API, on one port (spec §4.11)."""
