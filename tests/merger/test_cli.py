"""``python -m services.merger.apply_lora`` as a user runs it: progress, figure, exit codes; and
``python -m services.merger``, the worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def apply_lora(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.merger.apply_lora", *args],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_merges_and_reports_errors_without_a_traceback(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "merged"
    paths = [
        "--base-model-path", str(tiny_model_dir),
        "--lora-path", str(adapter_dir),
        "--target-model-path", str(target),
    ]  # fmt: skip
    done = apply_lora(*paths, "--dtype", "fp32", "--max-shard-size", "1GB")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[2/7] loading the base model" in done.stdout
    assert "verified: relative error" in done.stdout and "(tolerance 0.001, fp32)" in done.stdout
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()

    again = apply_lora(*paths)
    assert again.returncode == 1
    assert f"merge failed: {target} already exists; pass overwrite" in again.stderr
    assert "Traceback" not in again.stderr

    not_an_adapter = apply_lora(*paths[:2], "--lora-path", str(tiny_model_dir), *paths[4:])
    assert not_an_adapter.returncode == 1
    assert "has no adapter_config.json (it holds a full model" in not_an_adapter.stderr
    assert "Traceback" not in not_an_adapter.stderr


def test_python_m_services_merger_starts_a_worker_on_the_merge_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shared.celery_app as celery_app
    from services.merger.__main__ import main

    started = []
    monkeypatch.setattr(celery_app, "configure_logging", lambda *args: None)
    monkeypatch.setattr(
        celery_app, "run_worker", lambda app, *args: started.append((app.main, *args))
    )
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    main([])
    main(["--log-level", "DEBUG"])
    assert started == [
        ("merger", ["merge"], "merger", "WARNING"),
        ("merger", ["merge"], "merger", "DEBUG"),
    ]
