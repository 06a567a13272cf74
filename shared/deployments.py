"""Deployments: models the serving side loads on request, without restarting the stack.

The controller writes one record per deployed model name (``POST /v1/models/{name}/deploy``);
a model pool (``services.model_pool``) claims pending records, starts a model worker for
each, and moves the record along::

    pending -> loading -> deployed        (a worker serves it and is registered)
                       -> failed          (with the reason)
    any     -> undeploying -> (removed)   (``DELETE``: the pool stops the worker)

A pool refreshes a heartbeat key while it lives; records held by a pool whose heartbeat has
expired go back to ``pending`` so that another pool (or the same one restarted) loads them again.
"""

from __future__ import annotations

import time
from typing import Any

from shared.merging import MODEL_NAME_PATTERN
from shared.redis_keys import RedisKeys

__all__ = ["MODEL_NAME_PATTERN"]

DEPLOYMENT_KIND = "deployment"
POOL_HEARTBEAT_SECONDS = 10.0

PENDING, LOADING, DEPLOYED, FAILED, UNDEPLOYING = (
    "pending",
    "loading",
    "deployed",
    "failed",
    "undeploying",
)
# States in which a pool holds (or is about to hold) a worker for the model.
HELD_STATES = {LOADING, DEPLOYED}


def new_deployment_record(name: str, path: str, conv_template: str = "") -> dict[str, Any]:
    now = int(time.time())
    return {
        "object": "deployment",
        "id": name,
        "model": name,
        "path": path,
        "conv_template": conv_template or None,
        "status": PENDING,
        "pool": None,
        "worker_address": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


def pool_heartbeat_key(keys: RedisKeys, pool: str) -> str:
    return f"{keys.prefix}pool:{pool}"
