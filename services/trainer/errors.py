"""The one exception a training job raises for failures its user can act on."""

from __future__ import annotations


class TrainingError(Exception):
    """A user-facing failure: the message is what the job record shows as its error.

    Raised for bad inputs (missing base model, unreadable or empty dataset, too many samples that
    cannot be masked) and for resource failures with a hint (out of memory). Anything else that
    escapes ``run_training`` is a bug.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
