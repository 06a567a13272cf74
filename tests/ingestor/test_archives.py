"""Safe archive extraction: traversal refused member by member, corrupt archives reported."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from services.ingestor.files.archives import (
    CorruptArchiveError,
    archive_stem,
    extract_archive,
    is_archive,
)
from tests.ingestor.builders import write_tar_gz, write_zip


def _tar_with_links(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes = b"{}", **attrs) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if not attrs else 0
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if not attrs else None)

        add("ok.json")
        add("/abs.json")
        add("../evil.json")
        add("sub/../../evil2.json")
        add("link_out", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add("rel_out", type=tarfile.SYMTYPE, linkname="../../outside")
        add("hard_out", type=tarfile.LNKTYPE, linkname="../evil.json")
        add("dev", type=tarfile.CHRTYPE)
    return path


def test_tar_members_pointing_outside_are_refused_one_by_one(tmp_path: Path) -> None:
    archive = _tar_with_links(tmp_path / "data.tar.gz")
    dest = tmp_path / "out" / "data"
    result = extract_archive(archive, dest)
    refused = dict(result.unsafe)
    assert set(refused) == {
        "/abs.json",
        "../evil.json",
        "sub/../../evil2.json",
        "link_out",
        "rel_out",
        "hard_out",
        "dev",
    }
    assert refused["/abs.json"] == "AbsolutePathError"
    assert (dest / "ok.json").is_file()
    assert result.members == 1
    assert not (tmp_path / "out" / "evil.json").exists()
    assert not (tmp_path / "evil2.json").exists()
    assert sorted(p.name for p in dest.iterdir()) == [".ingest-extracted", "ok.json"]


def test_zip_members_pointing_outside_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "math.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("1_1.json", "{}")
        zf.writestr("../evil.json", "{}")
        zf.writestr("/abs.json", "{}")
        link = zipfile.ZipInfo("link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    dest = tmp_path / "math"
    result = extract_archive(archive, dest)
    assert {name for name, _ in result.unsafe} == {"../evil.json", "/abs.json", "link"}
    assert (dest / "1_1.json").is_file()
    assert not (tmp_path / "evil.json").exists()


def test_already_extracted_folder_is_skipped(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "physics.zip", {"a.json": b"{}"})
    dest = tmp_path / "physics"
    assert not extract_archive(archive, dest).skipped
    (dest / "a.json").write_text('{"edited": true}')
    archive.unlink()  # a re-run needs neither the archive nor a second extraction
    assert extract_archive(archive, dest).skipped
    assert (dest / "a.json").read_text() == '{"edited": true}'


@pytest.mark.parametrize("kind", ["truncated_tar", "garbage_zip"])
def test_corrupt_archive_raises_and_leaves_nothing_behind(tmp_path: Path, kind: str) -> None:
    if kind == "truncated_tar":
        members = {f"{i:03d}.json": bytes(range(256)) * 64 for i in range(20)}
        good = write_tar_gz(tmp_path / "good.tar.gz", members).read_bytes()
        archive = tmp_path / "code_chat.tar.gz"
        archive.write_bytes(good[: len(good) // 2])
    else:
        archive = tmp_path / "biology.zip"
        archive.write_bytes(b"PK\x03\x04 this is not really a zip file")
    dest = tmp_path / archive_stem(archive)
    with pytest.raises(CorruptArchiveError):
        extract_archive(archive, dest)
    assert not dest.exists()
    assert list(tmp_path.glob(".*partial")) == []


def test_archives_are_recognised_by_name_or_content(tmp_path: Path) -> None:
    zipped = write_zip(tmp_path / "download", {"a.json": b"{}"})
    assert is_archive(zipped)
    assert not is_archive(zipped, by_content=False)
    plain = tmp_path / "x.json"
    plain.write_text("[]")
    assert not is_archive(plain)
    assert archive_stem(Path("ai_society_chat.tar.gz")) == "ai_society_chat"
