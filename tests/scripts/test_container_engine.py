"""make test-containers' set-up (scripts/container_engine.py), the parts that need no engine:
the one-line refusal where podman cannot run, and the pip settings handed to the image build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import container_engine  # a script, imported as a module


def test_without_podman_and_root_it_says_so_in_one_line_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(container_engine.shutil, "which", lambda name: None)
    monkeypatch.setattr(container_engine.os, "geteuid", lambda: 1000)
    assert container_engine.main(["test"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    [line] = out.err.splitlines()
    assert line.startswith("make test-containers: podman cannot run containers here:")
    assert "podman, runc, debootstrap missing" in line and "root" in line


def test_the_build_sees_every_path_the_pip_settings_name(tmp_path: Path) -> None:
    index, wheels, cert = tmp_path / "pypi", tmp_path / "wheels", tmp_path / "ca.crt"
    (index / "simple").mkdir(parents=True)
    wheels.mkdir()
    cert.write_text("")
    sections = {
        "global": {
            "cert": str(cert),
            "extra-index-url": f"https://pypi.org/simple file://{index}/simple",
            "find-links": str(wheels),
            "timeout": "60",
        },
        "install": {"constraint": str(tmp_path / "missing.txt")},
    }
    mounts = container_engine.pip_mounts(sections)
    # A local index's pages link to files beside "simple": the folder above it is mounted.
    assert mounts == [
        arg
        for path in sorted(map(str, (cert, index, wheels)))
        for arg in ("-v", f"{path}:{path}:ro")
    ]
