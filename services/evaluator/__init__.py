"""Evaluation jobs: lm-evaluation-harness runs (the Open LLM Leaderboard set) on local models."""
