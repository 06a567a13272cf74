"""Stage "download": make every source available as local files or folders ("roots").

Hub files and URLs are downloaded (skipped when already there), archives are extracted safely
next to them, local paths are used in place. One failing source is reported and quarantined; the
others go on. The unit counted here is one item: a Hub file, a URL, a local path, or an archive
found inside a local folder.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.ingestor.files.archives import (
    CorruptArchiveError,
    archive_stem,
    extract_archive,
    is_archive,
    is_extracted,
)
from services.ingestor.files.data_files import iter_archives
from services.ingestor.files.fetch import UrlFetch, download_hub_file, download_url, url_file_name
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.sources import Source
from services.ingestor.stages.counts import StageCounts
from shared.settings import ingestor_settings

log = logging.getLogger(__name__)
STAGE = "download"


@dataclass
class FetchedSource:
    source: Source
    roots: list[Path] = field(default_factory=list)
    counts: StageCounts = field(default_factory=StageCounts)
    unsafe_members: int = 0

    def add_root(self, root: Path) -> None:
        self.roots.append(root)
        self.counts.keep()


def fetch_source(
    source: Source, download_dir: Path, rejected: RejectedLog, fetch: UrlFetch | None = None
) -> FetchedSource:
    """Download/extract one source into ``download_dir``; never raises for bad data. URLs are
    fetched as ``fetch`` allows (default: the INGEST_* settings)."""
    fetched = FetchedSource(source)
    download_dir.mkdir(parents=True, exist_ok=True)
    if source.kind == "hub":
        for filename in source.hub.filenames:
            _fetch_hub_file(fetched, filename, download_dir, rejected)
    elif source.kind == "url":
        fetch = fetch or UrlFetch.from_settings(ingestor_settings())
        _fetch_url(fetched, download_dir / source.name, rejected, fetch)
    else:
        _use_local(fetched, Path(source.location), download_dir / source.name, rejected)
    return fetched


def _use_local(fetched: FetchedSource, path: Path, extract_dir: Path, rej: RejectedLog) -> None:
    """A local folder is read in place, and archives inside it are extracted beside the run; a
    local archive is extracted, never deleted."""
    if path.is_dir():
        fetched.add_root(path)
        for archive in iter_archives(path):
            slug = "_".join((*archive.relative_to(path).parts[:-1], archive_stem(archive)))
            _unpack(fetched, archive, extract_dir / slug, rej, delete_archive=False)
    elif is_archive(path):
        _unpack(fetched, path, extract_dir / archive_stem(path), rej, delete_archive=False)
    else:
        fetched.add_root(path)


def _fetch_hub_file(
    fetched: FetchedSource, filename: str, download_dir: Path, rej: RejectedLog
) -> None:
    hub = fetched.source.hub
    target = download_dir / filename
    folder = download_dir / archive_stem(target)
    if is_archive(target, by_content=False) and _reuse_extraction(fetched, folder):
        return
    download = functools.partial(download_hub_file, hub, filename, download_dir)
    _download_then_use(fetched, target, folder, rej, download, f"{hub.repo_id}/{filename}")


def _fetch_url(fetched: FetchedSource, folder: Path, rej: RejectedLog, fetch: UrlFetch) -> None:
    url = fetched.source.location
    target = folder / url_file_name(url)
    extracted = folder / archive_stem(target)
    if _reuse_extraction(fetched, extracted):
        return
    download = functools.partial(download_url, url, target, fetch)
    _download_then_use(fetched, target, extracted, rej, download, url)


def _reuse_extraction(fetched: FetchedSource, folder: Path) -> bool:
    """An archive extracted completely by an earlier run is not downloaded again."""
    if not is_extracted(folder):
        return False
    fetched.add_root(folder)
    return True


def _download_then_use(
    fetched: FetchedSource,
    target: Path,
    folder: Path,
    rej: RejectedLog,
    download: Callable[[], Path],
    what: str,
) -> None:
    """Download ``target`` unless it is there, then use it: extracted into ``folder`` (and
    deleted) when it is an archive, else as it is."""
    if not target.exists():
        try:
            target = download()
        except Exception as exc:  # gated, missing, offline, HTTP, bad URL: all "not downloaded"
            name = fetched.source.name
            log.warning("event=download_failed source=%s file=%s error=%r", name, what, exc)
            fetched.counts.drop("download_failed")
            rej.add(name, STAGE, "download_failed", file=what, detail=str(exc))
            return
    _use(fetched, target, folder, rej)


def _use(fetched: FetchedSource, target: Path, folder: Path, rej: RejectedLog) -> None:
    if is_archive(target):
        _unpack(fetched, target, folder, rej, delete_archive=True)
    else:
        fetched.add_root(target)


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
    fetched.add_root(folder)


def locate_hub_dataset(
    source: Source, download_dir: Path, rejected: RejectedLog
) -> FetchedSource | None:
    """A Hub dataset already downloaded into ``download_dir`` (extracting a leftover archive),
    without touching the network; None when nothing of it is there."""
    fetched = FetchedSource(source)
    for filename in source.hub.filenames:
        target = download_dir / filename
        folder = download_dir / archive_stem(target)
        if is_archive(target, by_content=False) and _reuse_extraction(fetched, folder):
            continue
        if target.exists():
            _use(fetched, target, folder, rejected)
    return fetched if fetched.roots else None
