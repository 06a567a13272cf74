"""The original's single-file data commands (clean_sharegpt, optional_clean,
split_long_conversation): same flags, the pipeline's own code, clear errors, nothing
half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.ingestor.commands import clean_sharegpt, optional_clean, split_long_conversation
from services.ingestor.files.quarantine import RejectedLog
from services.ingestor.formats import SHAREGPT
from services.ingestor.rules.language import LanguagePolicy
from services.ingestor.rules.tokens import TurnTokenCounter
from services.ingestor.stages.convert import convert_source
from services.ingestor.stages.filter import filter_conv_file
from services.ingestor.stages.split import SampleStore, split_file
from tests.ingestor.builders import FRENCH, conversation_record, english, sharegpt_record
from tests.support import REPO_ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def serial_map(func, items):  # the pipeline's in-process map
    return map(func, items)


def sharegpt_dump(path: Path) -> Path:
    """Clean records, a repeated id, a too-short one, blocked words and French."""
    records = [sharegpt_record(i) for i in range(6)]
    records.append(sharegpt_record(1))  # duplicate id
    records.append({"id": "short", "conversations": [{"from": "human", "value": "hi"}]})
    blocked = sharegpt_record(7, sid="blocked")
    blocked["conversations"][1]["value"] = "As ChatGPT I cannot"
    records.append(blocked)
    french = sharegpt_record(8, sid="fr")
    for t in french["conversations"]:
        t["value"] = f"<p>{FRENCH}</p>"
    records.append(french)
    path.write_text(json.dumps(records))
    return path


def test_clean_sharegpt_writes_what_the_pipelines_convert_stage_writes(tmp_path: Path) -> None:
    dump = sharegpt_dump(tmp_path / "sg.json")
    out = tmp_path / "clean.json"
    code = clean_sharegpt.main(["--in-file", str(dump), "--out-file", str(out), "--workers", "1"])
    assert code == 0
    cli = json.loads(out.read_text())
    with RejectedLog(tmp_path / "rejected.jsonl") as rejected:
        converted = convert_source(
            "sharegpt", [dump], tmp_path / "conv", forced_format=SHAREGPT, seed=0,
            map_fn=serial_map, rejected=rejected,
        )  # fmt: skip
    assert cli == json.loads(converted.path.read_text())
    assert [r["id"] for r in cli] == ["sg0", "sg1", "sg2", "sg3", "sg4", "sg5", "fr"]
    assert not list(tmp_path.glob(".*partial*"))


def test_clean_sharegpt_slices_with_begin_and_end(tmp_path: Path) -> None:
    dump = sharegpt_dump(tmp_path / "sg.json")
    out = tmp_path / "slice.json"
    args = ["--in-file", str(dump), "--out-file", str(out), "--begin", "2", "--end", "5"]
    assert clean_sharegpt.main([*args, "--workers", "1"]) == 0
    assert [r["id"] for r in json.loads(out.read_text())] == ["sg2", "sg3", "sg4"]


def test_optional_clean_keeps_and_skips_languages_and_reduces_repetition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [conversation_record(f"en{i}", english(i), english(i + 1)) for i in range(3)]
    records.append(conversation_record("fr", FRENCH, FRENCH))
    records.append(conversation_record("rep", english(9), "call 5555555555 now"))
    data = tmp_path / "in.json"
    data.write_text(json.dumps(records))
    monkeypatch.chdir(tmp_path)
    assert optional_clean.main(["--in-file", str(data), "--keep-lang", "en", "--workers", "1"]) == 0
    kept = json.loads((tmp_path / "sharegpt_clean_en.json").read_text())
    assert [r["id"] for r in kept] == ["en0", "en1", "en2", "rep"]
    args = ["--in-file", str(data), "--skip-lang", "fr", "--reduce-rep", "--workers", "1"]
    assert optional_clean.main(args) == 0
    kept = json.loads((tmp_path / "sharegpt_clean_skip_fr_reduce_rep.json").read_text())
    assert [r["id"] for r in kept] == ["en0", "en1", "en2"]
    # the same rules as the pipeline's filter stage, on the same file
    policy = LanguagePolicy("all", "fr", True)
    filter_conv_file("x", data, tmp_path / "f.jsonl", policy, serial_map, None)
    lines = (tmp_path / "f.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == kept
    assert optional_clean.main(["--in-file", str(data), "--keep-lang", "en", "--skip-lang", "fr"])


def test_split_long_conversation_matches_the_split_stage(
    tmp_path: Path, default_model_dir: Path
) -> None:
    records = [
        conversation_record(f"c{i}", *(english(i * 10 + k, words=40 * (k % 3)) for k in range(7)))
        for i in range(5)
    ]
    data = tmp_path / "in.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "split.json"
    args = [
        "--in-file", str(data), "--out-file", str(out),
        "--model-name-or-path", str(default_model_dir), "--max-length", "300",
    ]  # fmt: skip
    assert split_long_conversation.main(args) == 0
    samples = json.loads(out.read_text())
    filtered = tmp_path / "filtered.jsonl"
    filtered.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = SampleStore(tmp_path / "store.jsonl")
    split_file(filtered, store, TurnTokenCounter(default_model_dir), 300)
    store.close()
    expected = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert samples == expected and len(samples) > len(records)
    assert split_long_conversation.main([*args, "--begin", "3", "--end", "4"]) == 0
    assert {s["id"].rsplit("_", 1)[0] for s in json.loads(out.read_text())} == {"c3"}


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"services.ingestor.{module}", *args],
        cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_bad_input_is_a_clear_error_and_leaves_nothing_behind(tmp_path: Path) -> None:
    dump = sharegpt_dump(tmp_path / "sg.json")
    out = tmp_path / "out" / "clean.json"
    missing = run_cli("clean_sharegpt", "--in-file", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "--in-file" in missing.stderr
    assert "nope.json does not exist" in missing.stderr
    past = run_cli(
        "clean_sharegpt", "--in-file", str(dump), "--out-file", str(out), "--begin", "50"
    )
    assert past.returncode == 2
    assert "--begin 50 is past the end" in past.stderr and "(10 records)" in past.stderr
    wrong_type = run_cli("split_long_conversation", "--in-file", str(dump), "--max-length", "2k")
    assert wrong_type.returncode == 2 and "--max-length" in wrong_type.stderr
    bad_begin = run_cli("clean_sharegpt", "--in-file", str(dump), "--begin", "1.5")
    assert bad_begin.returncode == 2 and "argument --begin" in bad_begin.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(dump.read_text()[:-200])  # truncated JSON list
    truncated = run_cli("optional_clean", "--in-file", str(broken), "--out-file", str(out))
    assert truncated.returncode == 2 and "invalid_json" in truncated.stderr
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == []  # no partial file either
