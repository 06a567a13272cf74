"""Write a model folder so that it appears whole or not at all.

Files go to a hidden sibling of the target (same filesystem, so the final rename is atomic);
the sibling is removed on any failure, cancel included. Overwriting moves the old folder aside
first and puts it back if the rename fails, so the name never points at nothing for long nor at
half a model.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.merger.errors import MergeError

STAGING_MARK = ".partial-"


def staging_path(target: Path) -> Path:
    return target.parent / f".{target.name}{STAGING_MARK}{uuid.uuid4().hex[:12]}"


@contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """A fresh temporary folder next to ``target``; deleted if the block raises."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(target)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _make_readable(folder: Path) -> None:
    """Some writers create files 0600 (temporary files renamed into place); services that serve
    the model may run as another user."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished ``staging`` folder to ``target``."""
    _make_readable(staging)
    if not target.exists():
        try:
            os.rename(staging, target)
        except OSError as exc:  # it appeared meanwhile (another merge), or a filesystem error
            raise MergeError(f"could not publish {target}: {exc}") from exc
        return
    if not overwrite:
        raise MergeError(f"{target} already exists; pass overwrite to replace it")
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError as exc:
        os.rename(old, target)
        raise MergeError(f"could not publish {target}: {exc}") from exc
    shutil.rmtree(old, ignore_errors=True)
