"""The exceptions a merge raises: failures its user can act on, and a requested stop."""

from __future__ import annotations


class MergeError(Exception):
    """A user-facing failure: the message is what the CLI prints and the merge record shows.

    Raised for bad inputs (missing files, an adapter trained on another base, a quantized base,
    a target that exists), for a merged model that fails verification, and for a failed write
    (full disk). Anything else that escapes ``merge_lora`` is a bug.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MergeCancelled(Exception):
    """``should_stop`` asked the merge to stop; nothing was published."""
