"""Stage "download": make every source available as local files or folders ("roots").

Hub files and URLs are downloaded (skipped when already there), archives are extracted safely
next to them, local paths are used in place. One failing source is reported and quarantined; the
others go on. The unit counted here is one item: a Hub file, a URL, a local path, or an archive
found inside a local folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from services.ingestor.archives import (
    CorruptArchiveError,
    archive_stem,
    extract_archive,
    is_archive,
    is_extracted,
)
from services.ingestor.counts import StageCounts
from services.ingestor.data_files import iter_archives
from services.ingestor.fetch import download_hub_file, download_url, url_file_name
from services.ingestor.quarantine import RejectedLog
from services.ingestor.sources import Source

log = logging.getLogger(__name__)
STAGE = "download"


@dataclass
class FetchedSource:
    source: Source
    roots: list[Path] = field(default_factory=list)
    counts: StageCounts = field(default_factory=StageCounts)
    unsafe_members: int = 0


def fetch_source(
    source: Source, download_dir: Path, rejected: RejectedLog, http_timeout: float = 60.0
) -> FetchedSource:
    """Download/extract one source into ``download_dir``; never raises for bad data."""
    fetched = FetchedSource(source)
    download_dir.mkdir(parents=True, exist_ok=True)
    if source.kind == "hub":
        for filename in source.hub.filenames:
            _fetch_hub_file(fetched, filename, download_dir, rejected)
    elif source.kind == "url":
        _fetch_url(fetched, download_dir / source.name, rejected, http_timeout)
    else:
        path = Path(source.location)
        if path.is_dir():
            fetched.roots.append(path)
            fetched.counts.keep()
            for archive in iter_archives(path):
                slug = "_".join((*archive.relative_to(path).parts[:-1], archive_stem(archive)))
                _unpack(fetched, archive, download_dir / source.name / slug, rejected, False)
        elif is_archive(path):
            target = download_dir / source.name / archive_stem(path)
            _unpack(fetched, path, target, rejected, delete_archive=False)
        else:
            fetched.roots.append(path)
            fetched.counts.keep()
    return fetched


def _fail(
    fetched: FetchedSource, reason: str, file: str, exc: BaseException, rej: RejectedLog
) -> None:
    name = fetched.source.name
    log.warning(
        "event=download_failed source=%s file=%s reason=%s error=%r", name, file, reason, exc
    )
    fetched.counts.drop(reason)
    rej.add(name, STAGE, reason, file=file, detail=str(exc))


def _fetch_hub_file(
    fetched: FetchedSource, filename: str, download_dir: Path, rej: RejectedLog
) -> None:
    target = download_dir / filename
    folder = download_dir / archive_stem(target)
    if is_archive(target, by_content=False) and is_extracted(folder):
        fetched.roots.append(folder)
        fetched.counts.keep()
        return
    if not target.exists():
        try:
            target = download_hub_file(fetched.source.hub, filename, download_dir)
        except Exception as exc:  # gated, missing, offline, HTTP: all mean "not downloaded"
            _fail(fetched, "download_failed", f"{fetched.source.hub.repo_id}/{filename}", exc, rej)
            return
    if is_archive(target):
        _unpack(fetched, target, folder, rej, delete_archive=True)
    else:
        fetched.roots.append(target)
        fetched.counts.keep()


def _fetch_url(fetched: FetchedSource, folder: Path, rej: RejectedLog, timeout: float) -> None:
    url = fetched.source.location
    target = folder / url_file_name(url)
    extracted = folder / archive_stem(target)
    if is_extracted(extracted):
        fetched.roots.append(extracted)
        fetched.counts.keep()
        return
    if not target.exists():
        try:
            download_url(url, target, timeout)
        except Exception as exc:  # httpx errors, bad URLs, disk errors: the URL is unusable
            _fail(fetched, "download_failed", url, exc, rej)
            return
    if is_archive(target):
        _unpack(fetched, target, extracted, rej, delete_archive=True)
    else:
        fetched.roots.append(target)
        fetched.counts.keep()


def _unpack(
    fetched: FetchedSource, archive: Path, folder: Path, rej: RejectedLog, delete_archive: bool
) -> None:
    name = fetched.source.name
    try:
        result = extract_archive(archive, folder)
    except CorruptArchiveError as exc:
        log.warning("event=corrupt_archive source=%s file=%s error=%s", name, archive, exc)
        fetched.counts.drop("corrupt_archive")
        rej.add(name, STAGE, "corrupt_archive", file=str(archive), detail=str(exc))
        return
    for member, why in result.unsafe:
        log.warning("event=unsafe_member source=%s archive=%s member=%s", name, archive, member)
        rej.add(name, STAGE, "unsafe_archive_member", file=f"{archive}:{member}", detail=why)
    fetched.unsafe_members += len(result.unsafe)
    log.info(
        "event=extracted source=%s archive=%s folder=%s files=%d skipped=%s",
        name,
        archive,
        folder,
        result.members,
        result.skipped,
    )
    if delete_archive:
        archive.unlink(missing_ok=True)
    fetched.roots.append(folder)
    fetched.counts.keep()


def locate_hub_dataset(
    source: Source, download_dir: Path, rejected: RejectedLog
) -> FetchedSource | None:
    """A Hub dataset already downloaded into ``download_dir`` (extracting a leftover archive),
    without touching the network; None when nothing of it is there."""
    fetched = FetchedSource(source)
    for filename in source.hub.filenames:
        target = download_dir / filename
        folder = download_dir / archive_stem(target)
        if is_archive(target, by_content=False) and is_extracted(folder):
            fetched.roots.append(folder)
            fetched.counts.keep()
        elif target.exists():
            if is_archive(target):
                _unpack(fetched, target, folder, rejected, delete_archive=True)
            else:
                fetched.roots.append(target)
                fetched.counts.keep()
    return fetched if fetched.roots else None
