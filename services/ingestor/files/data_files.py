"""Which files of a root are data: regular files, not hidden, not links, not archives (those are
extracted elsewhere), in a stable sorted order so runs are reproducible."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from services.ingestor.files.archives import is_archive


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name.startswith(".") or name.endswith(".part") or path.is_symlink():
                continue
            yield path


def iter_data_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in _walk(root):
        if not is_archive(path, by_content=False):
            yield path


def iter_archives(folder: Path) -> Iterator[Path]:
    for path in _walk(folder):
        if is_archive(path, by_content=False):
            yield path
