"""Hub and URL downloads, extraction into the chosen folder, and the download/convert/merge
commands. Only ``hf_hub_download`` is replaced; URLs are served from 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.ingestor.commands import convert, download, merge
from services.ingestor.files import fetch
from services.ingestor.files.fetch import UrlFetch
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.pipeline import IngestSpec, run_pipeline
from services.ingestor.sources import resolve_sources
from services.ingestor.stages.download import fetch_source
from shared.datasets import DATASET_SOURCE_KEYS
from shared.paths import UrlPolicy
from tests.ingestor import builders as b
from tests.support import REPO_ROOT

SHAREGPT_FILES = (
    "HTML_cleaned_raw_dataset/sg_90k_part1.json",
    "HTML_cleaned_raw_dataset/sg_90k_part2.json",
)
ALPACA_FILE = "data/train-00000-of-00001-a09b74b3ef9c3b56.parquet"


def hub_files(root: Path) -> dict[tuple[str, str], Path]:
    """Upstream files, built once per test in ``root``."""
    return {
        ("camel-ai/ai_society", "ai_society_chat.tar.gz"): b.camel_chat_tar(
            root / "ai_society_chat.tar.gz", [b.camel_chat_record(2, start=i) for i in range(6)]
        ),
        ("camel-ai/biology", "biology.zip"): b.science_zip(
            root / "biology.zip", [b.science_record(i) for i in range(5)]
        ),
        ("anon8231489123/ShareGPT_Vicuna_unfiltered", SHAREGPT_FILES[0]): b.write_json(
            root / "p1.json", [b.sharegpt_record(i) for i in range(4)]
        ),
        ("anon8231489123/ShareGPT_Vicuna_unfiltered", SHAREGPT_FILES[1]): b.write_json(
            root / "p2.json",
            [b.sharegpt_record(i) for i in range(3, 6)],  # sg3 repeats
        ),
        ("tatsu-lab/alpaca", ALPACA_FILE): b.alpaca_parquet(root / "a.parquet", b.alpaca_rows(4)),
    }


class FakeHub:
    def __init__(self, files: dict[tuple[str, str], Path]) -> None:
        self.files = files
        self.calls: list[tuple[str, str, str | None]] = []

    def __call__(self, *, repo_id: str, filename: str, repo_type: str, local_dir, token=None):
        assert repo_type == "dataset"
        self.calls.append((repo_id, filename, token))
        if (repo_id, filename) not in self.files:
            raise OSError(f"403 gated repo {repo_id}: accept the terms first")
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.files[(repo_id, filename)].read_bytes())
        return str(target)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(hub_files(tmp_path / "upstream"))
    monkeypatch.setattr(fetch, "hf_hub_download", fake)
    return fake


def test_datasets_argument_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (download.main, convert.main):
        with pytest.raises(SystemExit) as info:
            command(["--download_directory", "x"])
        assert info.value.code == 2
        assert "the following arguments are required: --datasets" in capsys.readouterr().err


def test_download_extracts_into_the_chosen_folder_and_goes_on_after_a_failure(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my_downloads"
    del hub.files[("camel-ai/ai_society", "ai_society_chat.tar.gz")]
    argv = ["--download_directory", str(folder), "--datasets", "ai_society", "biology", "sharegpt"]
    assert download.main(argv) == 1

    out = capsys.readouterr().out
    assert "ai_society could not be downloaded" in out
    assert (folder / "biology" / "1_1.json").is_file()  # extracted into the chosen folder
    assert not (folder / "biology.zip").exists()  # archive removed after extraction
    assert not (tmp_path / "datasets").exists()  # the original's hard-coded root is not used
    assert (folder / SHAREGPT_FILES[1]).is_file()
    assert {token for _, _, token in hub.calls} == {"hf_test_token"}
    lines = [json.loads(x) for x in (folder / "rejected.jsonl").read_text().splitlines()]
    assert [(x["source"], x["stage"], x["reason"]) for x in lines] == [
        ("ai_society", "download", "download_failed")
    ]
    assert "gated" in lines[0]["detail"]

    hub.calls.clear()
    assert download.main(["--download_directory", str(folder), "--datasets", "biology"]) == 0
    assert hub.calls == []  # already extracted: neither downloaded nor extracted again


def test_all_means_every_dataset(hub: FakeHub, tmp_path: Path) -> None:
    download.main(["--download-directory", str(tmp_path / "d"), "--datasets", "all"])
    repos = {repo for repo, _, _ in hub.calls}
    assert len(repos) == len(DATASET_SOURCE_KEYS)


def test_corrupt_download_is_reported_not_raised(hub: FakeHub, tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    hub.files[("camel-ai/biology", "biology.zip")] = broken
    folder = tmp_path / "d"
    with RejectedLog(folder / "rejected.jsonl") as rejected:
        fetched = fetch_source(resolve_sources(["biology"])[0], folder, rejected)
    assert fetched.roots == []
    assert fetched.counts.as_dict() == {"in": 1, "kept": 0, "dropped": {"corrupt_archive": 1}}
    assert json.loads((folder / "rejected.jsonl").read_text())["reason"] == "corrupt_archive"


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_url_sources_are_downloaded_and_extracted(
    http_root: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = http_root
    b.science_zip(root / "physics.zip", [b.science_record(i) for i in range(3)])
    sources = resolve_sources([f"{base}/physics.zip", f"{base}/missing.json"])
    folder = tmp_path / "d"
    local = UrlFetch(UrlPolicy.parse("127.0.0.1"))  # the test server is on loopback
    with RejectedLog(folder / "rejected.jsonl") as rejected:
        good, missing = (fetch_source(s, folder, rejected, local) for s in sources)
    assert good.roots == [folder / "physics" / "physics"]
    assert len(list(good.roots[0].glob("*.json"))) == 3
    assert missing.counts.dropped == {"download_failed": 1}
    assert "404" in json.loads((folder / "rejected.jsonl").read_text())["detail"]


def test_download_convert_merge_commands_chain(
    hub: FakeHub, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "datasets"
    keys = ["ai_society", "biology", "sharegpt", "alpaca"]
    assert download.main(["--download_directory", str(folder), "--datasets", *keys]) == 0
    assert (
        convert.main(["--download_directory", str(folder), "--datasets", *keys, "--workers", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "Processing sharegpt..." in out
    conv = {k: json.loads((folder / f"{k}_conv.json").read_text()) for k in keys}
    assert [len(conv[k]) for k in keys] == [6, 5, 6, 4]  # sharegpt: 7 read, sg3 twice
    assert [r["id"] for r in conv["sharegpt"]] == [f"sg{i}" for i in range(6)]

    argv = [
        "--in-directory", str(folder), "--out-file", "dataset.json",
        "--tokenizer-path", str(tiny_model_dir), "--max-length", "2048", "--workers", "1",
        "--keep_lang", "all", "--reduce_rep",
    ]  # fmt: skip
    assert merge.main(argv) == 0
    out = capsys.readouterr().out
    assert f"{folder / 'alpaca_conv.json'} has 4 conversations." in out
    assert f"Saving to {folder / 'dataset.json'}" in out
    dataset = json.loads((folder / "dataset.json").read_text())
    assert len(dataset) == 21
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["records"] == 21
    assert set(manifest["sources"]) == set(keys)
    assert (manifest["language"]["keep_lang"], manifest["language"]["reduce_rep"]) == ("all", True)
    assert manifest["spec"]["tokenizer_path"] == str(tiny_model_dir)


def test_convert_reports_a_dataset_that_was_not_downloaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert convert.main(["--download_directory", str(tmp_path), "--datasets", "math"]) == 1
    assert "math: not found" in capsys.readouterr().out


def test_runs_share_hub_downloads_and_give_the_same_dataset(
    hub: FakeHub, tmp_path: Path, tiny_model_dir: Path
) -> None:
    shared = tmp_path / "hub"
    spec = IngestSpec(["biology", "alpaca"], str(tiny_model_dir), keep_lang="all", workers=1)
    first = run_pipeline(spec, tmp_path / "job1", download_dir=shared)
    assert first["records"] == 9
    assert first["sources"]["biology"]["formats"] == {"camel_science": 5}
    assert (shared / "biology" / "1_1.json").is_file()
    hub.calls.clear()
    second = run_pipeline(spec, tmp_path / "job2", download_dir=shared)
    assert hub.calls == []
    assert second["sha256"] == first["sha256"]  # ids and order derive from the seed


@pytest.mark.parametrize(
    ("command", "spellings"),
    [
        ("download", ["--download_directory", "--datasets"]),
        ("convert", ["--download_directory", "--datasets", "--workers"]),
        ("merge", ["--in_directory", "--out_file", "--tokenizer_path", "--max_length"]),
    ],
)
def test_the_original_command_lines_stay_where_they_were(command: str, spellings: list) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"services.ingestor.{command}", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(spelling in done.stdout for spelling in spellings)


def test_settings_give_the_defaults_and_flags_of_other_commands_are_refused(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("INGEST_DOWNLOAD_DIR", str(tmp_path / "from-env"))
    assert download.main(["--datasets", "biology"]) == 0
    assert (tmp_path / "from-env" / "biology" / "1_1.json").is_file()
    with pytest.raises(SystemExit) as info:
        download.main(["--datasets", "biology", "--max-length", "5"])
    assert info.value.code == 2
    assert "--max-length" in capsys.readouterr().err
