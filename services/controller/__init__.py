"""Control plane: worker registry in Redis, dispatch, and the worker-protocol proxy."""
