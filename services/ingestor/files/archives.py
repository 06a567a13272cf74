"""Safe extraction of tar and zip archives into a chosen folder.

Members that would land outside the folder (absolute paths, ``..``, links pointing out, device
files) are refused one by one and reported; a corrupt archive leaves nothing half-extracted. A
folder that holds the completion marker is never extracted again.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from shared.datasets import ARCHIVE_MAGIC, ARCHIVE_SUFFIXES, HEAD_BYTES, is_tar_header

EXTRACTED_MARKER = ".ingest-extracted"


class CorruptArchiveError(Exception):
    """The archive cannot be read to the end."""


@dataclass
class Extraction:
    folder: Path
    members: int = 0
    skipped: bool = False  # already extracted earlier
    unsafe: list[tuple[str, str]] = field(default_factory=list)  # (member name, why)


def is_archive(path: Path, by_content: bool = True) -> bool:
    """By name, or by its first bytes (a URL download may have no telling suffix)."""
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    if not by_content:
        return False
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return False
    return head.startswith(ARCHIVE_MAGIC) or is_tar_header(head)


def archive_stem(path: Path) -> str:
    """Folder name for an archive: its file name up to the first dot (the original's rule)."""
    return path.name.split(".")[0] or "archive"


def is_extracted(folder: Path) -> bool:
    return (folder / EXTRACTED_MARKER).exists()


def extract_archive(archive: Path, folder: Path) -> Extraction:
    """Extract ``archive`` into ``folder``: staged in a private sibling folder and renamed when
    complete, so concurrent runs sharing a download folder never see half an extraction."""
    if is_extracted(folder):
        return Extraction(folder, skipped=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{folder.name}-", suffix=".partial", dir=folder.parent)
    )
    try:
        try:
            if zipfile.is_zipfile(archive):
                result = _extract_zip(archive, staging)
            else:
                result = _extract_tar(archive, staging)
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise CorruptArchiveError(f"{archive.name}: {exc}") from exc
        (staging / EXTRACTED_MARKER).write_text(f"{archive.name}\n")
        if is_extracted(folder):  # another run finished first
            return Extraction(folder, skipped=True)
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished leftover, never a complete one
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.folder = folder
    return result


def _name_problem(name: str) -> str | None:
    """Refuse, rather than rewrite, names that point away from the destination."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "AbsolutePathError"
    if ".." in PurePosixPath(name).parts:
        return "OutsideDestinationError"
    return None


def _extract_tar(archive: Path, dest: Path) -> Extraction:
    result = Extraction(dest)
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            problem = _name_problem(member.name)
            if problem is None:
                try:  # the "data" filter also refuses links out, devices and odd modes
                    tar.extract(member, dest, filter="data")
                except tarfile.FilterError as exc:
                    problem = type(exc).__name__
            if problem:
                result.unsafe.append((member.name, problem))
            elif member.isfile():
                result.members += 1
    return result


def _zip_member_problem(info: zipfile.ZipInfo, dest: Path) -> str | None:
    """``dest`` must be resolved already."""
    problem = _name_problem(info.filename)
    if problem:
        return problem
    if stat.S_ISLNK(info.external_attr >> 16):
        return "SymlinkError"
    if not (dest / info.filename).resolve().is_relative_to(dest):
        return "OutsideDestinationError"
    return None


def _extract_zip(archive: Path, dest: Path) -> Extraction:
    result = Extraction(dest)
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            problem = _zip_member_problem(info, dest)
            if problem:
                result.unsafe.append((info.filename, problem))
                continue
            zf.extract(info, dest)
            if not info.is_dir():
                result.members += 1
    return result
