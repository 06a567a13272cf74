"""Whether some running trainer could ever take a job: a job needing more GPUs than every live
trainer offers would wait on its queue for ever, so it is refused at submission instead.

With no trainer live at all the job is accepted and waits (trainers may be starting, or down for
a moment); it can be cancelled while it waits.
"""

from __future__ import annotations

from services.controller.field_errors import Problem
from shared.stores import Stores
from shared.trainers import most_gpus_offered


def check_gpus(gpus: int, stores: Stores) -> list[Problem]:
    if gpus <= 0:
        return []
    offered = most_gpus_offered(stores.client, stores.keys)
    if offered is None or gpus <= offered:
        return []
    return [
        (
            "gpus",
            f"{gpus} GPUs is more than any running trainer offers (at most {offered}); "
            "ask for fewer, or start a trainer with more (TRAINER_GPUS)",
        )
    ]
