"""Trainer: Celery-queued full finetune, LoRA and QLoRA jobs (issue: training jobs)."""
