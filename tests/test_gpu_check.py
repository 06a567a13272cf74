"""``make gpu-check``'s script runs end to end in its dry run (tiny shapes on the CPU): every
check executes and the goal table and JSON come out. Figures are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1.1B full finetune MFU (packed)" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["dry_run"] is True
    for key in ("decode_smollm2", "decode_llama_1b"):
        assert figures[key]["single_tokens"] > 0 and figures[key]["streams_tokens"] > 0
    assert figures["train"]["step_seconds"] > 0
    assert figures["qlora"].get("qlora_peak_gib_scaled", 0) > 0 or figures["qlora"]["qlora_skipped"]
