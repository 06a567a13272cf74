"""Model worker: serves one model over the FastChat worker protocol."""
