"""CAMEL model downloads: a clear message offline, real files from a (mocked) Hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.model_tools.download_camel import CAMEL_MODELS, DownloadError, download, main
from tests.support import REPO_ROOT


def test_offline_the_cli_says_so_and_fails(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.model_tools.download_camel",
         "--model", "CAMEL-13B-Combined-Data", "--download-directory", str(tmp_path)],
        cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "camel-ai/CAMEL-13B-Combined-Data" in result.stderr
    assert "not reachable" in result.stderr and "HF_HUB_OFFLINE" in result.stderr


def test_the_snapshot_lands_in_the_models_folder(tmp_path: Path) -> None:
    calls = []

    def fake_hub(repo_id: str, local_dir: str) -> str:
        calls.append(repo_id)
        Path(local_dir, "config.json").write_text("{}")
        return local_dir

    target = download("CAMEL-33B-Combined-Data", tmp_path, fetch=fake_hub)
    assert target == tmp_path / "CAMEL-33B-Combined-Data"
    assert (target / "config.json").exists() and calls == ["camel-ai/CAMEL-33B-Combined-Data"]


def test_only_released_models_are_known(tmp_path: Path) -> None:
    assert len(CAMEL_MODELS) == 3
    with pytest.raises(DownloadError, match="unknown model"):
        download("CAMEL-7B", tmp_path, fetch=lambda **_: "")


def test_the_folder_is_the_models_dir_setting_under_the_original_flag_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "env"))
    assert main(["--model", "CAMEL-13B-Combined-Data"]) == 2
    assert str(tmp_path / "env" / "CAMEL-13B-Combined-Data") in capsys.readouterr().err
    flag = ["--download_directory", str(tmp_path / "flag")]
    assert main(["--model_name", "CAMEL-13B-Combined-Data", *flag]) == 2
    assert str(tmp_path / "flag" / "CAMEL-13B-Combined-Data") in capsys.readouterr().err
