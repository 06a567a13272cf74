"""`make demo` (scripts/stack.py demo) against whichever stack `make up` started."""

from __future__ import annotations

import sys

import pytest

from tests.support import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import stack  # a script, imported as a module


def test_make_demo_names_the_base_model_as_the_services_see_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    commands: list[list[str]] = []
    monkeypatch.setattr(stack.subprocess, "run", lambda cmd, **kw: commands.append(cmd) or _Done())
    for docker in (True, False):
        monkeypatch.setattr(stack, "in_docker", lambda docker=docker: docker)
        assert stack.demo(["--controller-address", "http://h:1"]) == 0
    in_docker, local = commands
    assert in_docker[1:] == [
        "-m",
        "services.controller.demo",
        "--base-model",
        "/data/models/SmolLM2-135M-Instruct",
        "--controller-address",
        "http://h:1",
    ]
    assert local[1:] == ["-m", "services.controller.demo", "--controller-address", "http://h:1"]


class _Done:
    returncode = 0
