"""Merger: merges LoRA adapters into their base models (issue: LoRA merger and deployment)."""
