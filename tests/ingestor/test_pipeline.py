"""End to end on a local mixture in every supported layout: counts that add up, quarantine,
determinism, a loadable Hugging Face dataset, and the ``run`` command as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.ingestor.formats.records import roles_alternate
from services.ingestor.pipeline import IngestError, IngestSpec, run_pipeline
from services.ingestor.stages.counts import STAGES, counts_balance
from tests.ingestor import builders as b
from tests.support import REPO_ROOT

MAX_LENGTH = 512


def conversation_lines() -> list[dict]:
    good = b.conversation_record("conv-good", b.english(1), b.english(2))
    oversized = b.conversation_record(
        "conv-long",
        b.english(3),
        b.english(4),
        b.english(5),
        b.english(6, words=600),  # one round over the budget
        b.english(7),
        b.english(8),
    )
    missing = {"id": "conv-missing", "turns": []}
    wrong_roles = b.conversation_record("conv-system", "x", "y", roles=("system", "gpt"))
    return [good, oversized, missing, wrong_roles]


def sharegpt_records() -> list[dict]:
    good = [b.sharegpt_record(i) for i in range(4)]
    dup_id = b.sharegpt_record(7, sid="sg0")
    dup_value = {"id": "sg-copy", "conversations": [dict(t) for t in good[1]["conversations"]]}
    dup_value["conversations"][0]["value"] = "A different question about the same answer."
    too_short = {"id": "sg-short", "conversations": [{"from": "human", "value": "hello?"}]}
    wrong_format = {
        "id": "sg-wrong",
        "conversations": [
            {"from": "human", "value": "a"},
            {"from": "gpt", "value": "b"},
            {"from": "gpt", "value": "c"},
        ],
    }
    blocked = {
        "id": "sg-blocked",
        "conversations": [
            {"from": "human", "value": "<p>Who made you?</p>"},
            {"from": "gpt", "value": "<p>I am ChatGPT, made by OpenAI.</p>"},
        ],
    }
    french = {
        "id": "sg-fr",
        "conversations": [
            {"from": "human", "value": f"<p>{b.FRENCH}</p>"},
            {"from": "gpt", "value": f"<p>{b.FRENCH}</p>"},
        ],
    }
    return [*good, dup_id, dup_value, too_short, wrong_format, blocked, french]


@pytest.fixture(scope="module")
def mixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding every supported layout plus broken inputs."""
    root = tmp_path_factory.mktemp("mixture")
    chats = [b.camel_chat_record(3, start=i, words=20) for i in range(5)]
    chats[4]["message_3"]["role_type"] = "CRITIC"  # wrong roles
    b.camel_chat_tar(root / "ai_society_chat.tar.gz", chats)
    science = {f"{i}_1.json": json.dumps(b.science_record(i)).encode() for i in range(4)}
    science["../escape.json"] = json.dumps(b.science_record(9)).encode()
    b.write_zip(root / "physics.zip", science)
    b.alpaca_parquet(root / "alpaca" / "train.parquet", b.alpaca_rows(6))
    b.write_json(root / "sharegpt" / "sg_part1.json", sharegpt_records())
    lines = "".join(json.dumps(r) + "\n" for r in conversation_lines())
    (root / "conversations.jsonl").write_text(lines)
    (root / "notes.txt").write_text("not a dataset\n")
    (root / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    return root


def run(mixture: Path, work: Path, tokenizer: Path, **options) -> dict:
    spec = IngestSpec([str(mixture)], str(tokenizer), max_length=MAX_LENGTH, workers=1)
    for key, value in options.items():
        setattr(spec, key, value)
    return run_pipeline(spec, work)


@pytest.fixture(scope="module")
def result(
    mixture: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("work")
    progress: list[tuple[str, int, int | None]] = []
    spec = IngestSpec([str(mixture)], str(tiny_model_dir), max_length=MAX_LENGTH, workers=1)
    manifest = run_pipeline(spec, work, lambda *event: progress.append(event))
    manifest["_progress"] = progress
    return manifest, work


def test_counts_add_up_at_every_stage_and_for_every_source(result: tuple[dict, Path]) -> None:
    manifest, _ = result
    assert list(manifest["stages"]) == list(STAGES)
    for stage, counts in manifest["stages"].items():
        assert counts_balance(counts), stage
    for source in manifest["sources"].values():
        for stage, counts in source["stages"].items():
            assert counts_balance(counts), stage
        assert counts_balance(source["stages"]["split"]["rounds"])
    stages = manifest["stages"]
    # what one stage keeps is what the next receives
    assert stages["convert"]["kept"] == stages["filter"]["in"]
    assert stages["filter"]["kept"] == stages["split"]["in"]
    assert stages["split"]["samples_out"] == stages["merge"]["in"] == manifest["records"]


def test_every_drop_reason_is_counted(result: tuple[dict, Path]) -> None:
    stages = result[0]["stages"]
    assert stages["download"]["dropped"] == {"corrupt_archive": 1}
    assert stages["convert"]["dropped"] == {
        "blocked_words": 1,
        "duplicate_id": 1,
        "duplicate_value": 1,
        "invalid_json": 1,
        "missing_fields": 1,
        "too_short": 1,
        "wrong_format": 1,
        "wrong_roles": 2,
    }
    assert stages["filter"]["dropped"] == {"language": 1}
    assert stages["split"]["rounds"]["dropped"] == {"oversized_round": 1}
    # 4 chats (each split in two) + 4 problems + 6 alpaca + 4 sharegpt + 2 conversations (the
    # long one split around its oversized round)
    assert stages["split"]["kept"] == 20
    assert result[0]["records"] == 8 + 4 + 6 + 4 + 3


def test_malformed_inputs_are_quarantined_with_source_stage_and_reason(
    result: tuple[dict, Path],
) -> None:
    manifest, work = result
    lines = [json.loads(x) for x in (work / "rejected.jsonl").read_text().splitlines()]
    assert manifest["rejected"] == len(lines)
    reasons = sorted((x["stage"], x["reason"]) for x in lines)
    assert reasons == [
        ("convert", "invalid_json"),
        ("convert", "missing_fields"),
        ("convert", "wrong_format"),
        ("convert", "wrong_roles"),
        ("convert", "wrong_roles"),
        ("download", "corrupt_archive"),
        ("download", "unsafe_archive_member"),
    ]
    by_reason = {x["reason"]: x for x in lines}
    assert by_reason["invalid_json"]["file"].endswith("notes.txt")
    assert by_reason["missing_fields"]["record"] == {"id": "conv-missing", "turns": []}
    assert by_reason["corrupt_archive"]["file"].endswith("broken.zip")
    assert by_reason["unsafe_archive_member"]["file"].endswith("../escape.json")
    (name,) = manifest["sources"]
    assert {x["source"] for x in lines} == {name}
    assert not (work / "sources" / name / "escape.json").exists()


def test_dataset_files_manifest_and_hash(result: tuple[dict, Path]) -> None:
    manifest, work = result
    jsonl = (work / "dataset.jsonl").read_bytes()
    samples = [json.loads(line) for line in jsonl.decode().splitlines()]
    assert json.loads((work / "dataset.json").read_text()) == samples
    assert manifest["sha256"] == hashlib.sha256(jsonl).hexdigest()
    assert json.loads((work / "manifest.json").read_text())["sha256"] == manifest["sha256"]
    assert all(roles_alternate(s["conversations"]) for s in samples)
    assert all(set(s) == {"id", "conversations"} for s in samples)
    ids = [s["id"] for s in samples]
    assert len(set(ids)) == len(ids)
    assert {"conv-long_0", "conv-long_4", "sg0_0"} <= set(ids)
    lengths = manifest["token_lengths"]
    assert lengths["count"] == len(samples)
    assert lengths["min"] <= lengths["median"] <= lengths["p95"] <= lengths["max"] <= MAX_LENGTH
    assert manifest["max_length"] == MAX_LENGTH
    assert manifest["tokenizer"].endswith("tiny-llama")
    assert manifest["spec"]["seed"] == 0
    assert not (work / ".ingest-scratch").exists()


def test_progress_reports_each_stage_in_order(result: tuple[dict, Path]) -> None:
    stages = [stage for stage, _, _ in result[0]["_progress"]]
    assert list(dict.fromkeys(stages)) == list(STAGES)
    last = {stage: (done, total) for stage, done, total in result[0]["_progress"]}
    assert last["merge"] == (result[0]["records"], result[0]["records"])


def test_loads_as_a_hugging_face_dataset(result: tuple[dict, Path], tmp_path: Path) -> None:
    import datasets

    _, work = result
    loaded = datasets.load_dataset(
        "json", data_files=str(work / "dataset.jsonl"), split="train", cache_dir=str(tmp_path)
    )
    assert loaded.num_rows == result[0]["records"]
    assert set(loaded.column_names) == {"id", "conversations"}
    assert set(loaded[0]["conversations"][0]) == {"from", "value"}


def test_same_seed_same_dataset_even_with_two_processes(
    result: tuple[dict, Path], mixture: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    again = run(mixture, tmp_path / "again", tiny_model_dir, workers=2)
    assert again["sha256"] == result[0]["sha256"]
    assert again["stages"] == {k: v for k, v in result[0]["stages"].items()}
    other_seed = run(mixture, tmp_path / "seed1", tiny_model_dir, seed=1)
    assert other_seed["sha256"] != result[0]["sha256"]
    assert other_seed["records"] == result[0]["records"]


def test_keep_all_languages_keeps_the_french_sample(
    mixture: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    manifest = run(mixture, tmp_path / "all", tiny_model_dir, keep_lang="all")
    assert manifest["stages"]["filter"]["dropped"] == {}
    assert manifest["language"]["keep_lang"] == "all"


def test_bad_requests_raise_value_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    source, work, tokenizer = tmp_path / "src", tmp_path / "work", str(tiny_model_dir)
    source.mkdir()
    with pytest.raises(ValueError, match="'shareGPT'"):
        run_pipeline(IngestSpec(["shareGPT"], tokenizer), work)
    with pytest.raises(ValueError, match=r"missing\.json"):
        run_pipeline(IngestSpec([str(tmp_path / "missing.json")], tokenizer), work)
    with pytest.raises(ValueError, match="tokenizer"):
        run_pipeline(IngestSpec([str(source)], str(tmp_path / "no-tokenizer")), work)
    with pytest.raises(ValueError, match="contains the work folder"):
        run_pipeline(IngestSpec([str(source)], tokenizer), source / "work")
    with pytest.raises(ValueError, match="max_length"):
        run_pipeline(IngestSpec([str(source)], tokenizer, max_length=0), work)


def test_nothing_readable_is_an_ingest_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "math.zip"
    broken.write_bytes(b"PK\x03\x04 nope")
    with pytest.raises(IngestError, match="math"):
        run_pipeline(IngestSpec([str(broken)], str(tiny_model_dir), workers=1), tmp_path / "w")


def test_run_command_as_a_process(mixture: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "cli"
    command = [
        sys.executable, "-m", "services.ingestor", "run",
        "--sources", str(mixture), "--work-dir", str(work),
        "--tokenizer-path", str(tiny_model_dir), "--max-length", str(MAX_LENGTH),
        "--workers", "2", "--seed", "0",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["records"] == 25
    assert f"25 samples in {work / 'dataset.jsonl'}" in done.stdout
    assert "event=progress stage=merge" in done.stderr

    bad = subprocess.run(
        [sys.executable, "-m", "services.ingestor", "run", "--sources", "nope"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "unknown source 'nope'" in bad.stderr


def test_token_length_histogram_counts_each_sample_once() -> None:
    from services.ingestor.stages.merge import length_stats

    stats = length_stats([3, 16, 17, 40, 64, 65, 500])
    assert stats["histogram"] == [
        {"le": 16, "count": 2},
        {"le": 32, "count": 1},
        {"le": 64, "count": 2},
        {"le": 128, "count": 1},
        {"le": 256, "count": 0},
        {"le": 512, "count": 1},
    ]
    assert length_stats([])["histogram"] == []
