"""Every Redis-backed record store of a deployment, built once from the settings.

The controller builds one ``Stores`` per app and the job services one per process; all of them
share one connection pool, so a new kind of record is one more line here, not one more client.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.datasets import DATASET_KIND
from shared.deployments import DEPLOYMENT_KIND
from shared.evals import EVAL_KIND, ResultsBoard
from shared.job_records import EventLog, RecordStore
from shared.merging import MERGE_KIND
from shared.redis_client import sync_redis
from shared.redis_keys import RedisKeys
from shared.settings import CommonSettings
from shared.training import JOB_KIND


@dataclass(frozen=True)
class Stores:
    client: redis.Redis
    keys: RedisKeys
    datasets: RecordStore
    jobs: RecordStore
    job_events: EventLog
    merges: RecordStore
    evals: RecordStore
    eval_results: ResultsBoard
    deployments: RecordStore

    @classmethod
    def connect(cls, common: CommonSettings) -> Stores:
        client = sync_redis(common.redis_url)
        keys = RedisKeys(common.redis_key_prefix)
        return cls(
            client=client,
            keys=keys,
            datasets=RecordStore(client, keys, DATASET_KIND),
            jobs=RecordStore(client, keys, JOB_KIND),
            job_events=EventLog(client, keys, JOB_KIND),
            merges=RecordStore(client, keys, MERGE_KIND),
            evals=RecordStore(client, keys, EVAL_KIND),
            eval_results=ResultsBoard(client, keys),
            deployments=RecordStore(client, keys, DEPLOYMENT_KIND),
        )

    def close(self) -> None:
        self.client.close()
