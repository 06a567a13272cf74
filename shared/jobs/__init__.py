"""One way to run a queued job record: claim it once, hold it, stop on cancel, finish it once.

The ingestor, trainer, merger and evaluator each supply only their work function
(``JobRunner.run(job_id, work)``); ``OrphanWatcher`` sends again the jobs whose runner died.
"""

from shared.jobs.orphans import OrphanWatcher, find_orphans
from shared.jobs.runner import (
    TERMINAL_STATUSES,
    Finished,
    HandedOff,
    JobCancelled,
    JobFailed,
    JobRun,
    JobRunner,
    Outcome,
    runner_identity,
)

__all__ = [
    "TERMINAL_STATUSES",
    "Finished",
    "HandedOff",
    "JobCancelled",
    "JobFailed",
    "JobRun",
    "JobRunner",
    "OrphanWatcher",
    "Outcome",
    "find_orphans",
    "runner_identity",
]
