"""``python -m services.evaluator.run`` prints the results table without the queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.evaluator.run import main, parse_fewshot


def test_few_shot_flags_parse() -> None:
    assert parse_fewshot("5") == 5
    assert parse_fewshot("arc_challenge=25, hellaswag=10") == {"arc_challenge": 25, "hellaswag": 10}
    assert parse_fewshot(None) is None


def test_the_cli_prints_the_table(
    tiny_model_dir: Path, eval_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "results.json"
    code = main(
        [
            "--model",
            str(tiny_model_dir),
            "--tasks",
            "capitals_mc",
            "--num-fewshot",
            "1",
            "--limit",
            "4",
            "--device",
            "cpu",
            "--data-dir",
            str(eval_data_dir),
            "--output",
            str(output),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["task", "metric", "shots", "n", "value"]
    assert lines[1].split()[:4] == ["capitals_mc", "acc_norm", "1", "4"]
    saved = json.loads(output.read_text())
    assert saved["results"]["tasks"][0]["value"] == float(lines[1].split()[-1])


def test_the_cli_reports_a_missing_dataset(
    tiny_model_dir: Path, eval_data_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--model", str(tiny_model_dir), "--tasks", "offline_mc"]
    assert main([*argv, "--data-dir", str(eval_data_dir)]) == 2
    assert "camel-chat/not-downloaded-mc" in capsys.readouterr().err
