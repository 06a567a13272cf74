"""The model pool: serves deployed models on demand, one model worker process per model.

``python -m services.model_pool`` runs a supervisor that watches the deployment records in Redis
(see ``shared/deployments.py``). For a pending deployment it claims the record, starts
``python -m services.model_worker`` on a free port of its range, and marks the record deployed
once the worker answers (the worker registers itself with the controller, so the model appears in
``/list_models`` and ``/v1/models``). Undeploying stops the worker, which unregisters itself.

A worker per process keeps each model's memory apart and reuses the worker unchanged (the pool
only knows its command line, never its code); the children die with the pool, and on a clean
stop their deployments go back to pending, so they are served again when a pool starts.
"""
