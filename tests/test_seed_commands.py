"""The README's table of the original's commands names modules that exist and answer ``--help``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

SECTION = "## The original README's commands"


def modules_in_table() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    table = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return sorted(set(re.findall(r"(?:python|torchrun) -m (services(?:\.\w+)+)", table)))


def test_the_table_names_every_kind_of_command() -> None:
    modules = modules_in_table()
    for expected in (
        "services.ingestor.download",
        "services.ingestor.merge",
        "services.trainer.train_mem",
        "services.trainer.train_qlora",
        "services.merger.apply_lora",
        "services.model_worker.cli",
        "services.controller.test_message",
        "services.webui",
    ):
        assert expected in modules, expected


@pytest.mark.parametrize("module", modules_in_table())
def test_each_command_of_the_table_answers_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower(), done.stdout[:500]
