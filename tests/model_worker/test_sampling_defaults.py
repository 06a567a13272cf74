"""Sampling defaults from the model's generation_config.json, for requests that leave them out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.model_worker.sampling_defaults import read_sampling_defaults, with_defaults
from shared.schemas import GenerateParams
from tests.model_worker.test_engine import PROMPTS, make_engine  # noqa: F401  (fixture)


def write_config(folder: Path, config: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


def test_only_values_written_in_the_file_count(tmp_path: Path) -> None:
    folder = write_config(
        tmp_path / "m", {"do_sample": True, "temperature": 0.2, "top_p": 0.9, "eos_token_id": 2}
    )
    assert read_sampling_defaults(folder) == {"temperature": 0.2, "top_p": 0.9}
    full = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
    assert read_sampling_defaults(write_config(tmp_path / "q", full)) == full


def test_do_sample_false_means_greedy(tmp_path: Path) -> None:
    folder = write_config(tmp_path / "m", {"do_sample": False, "temperature": 0.6})
    assert read_sampling_defaults(folder) == {"temperature": 0.0}


def test_missing_broken_or_invalid_files_give_no_defaults(tmp_path: Path) -> None:
    assert read_sampling_defaults(tmp_path / "absent") == {}
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "generation_config.json").write_text("{not json")
    assert read_sampling_defaults(tmp_path / "broken") == {}
    assert read_sampling_defaults(write_config(tmp_path / "list", [1, 2])) == {}
    assert read_sampling_defaults(write_config(tmp_path / "bad", {"top_p": 7})) == {}


def test_a_request_value_wins_over_the_model_default() -> None:
    defaults = {"temperature": 0.2, "top_p": 0.9}
    left_out = with_defaults(GenerateParams(prompt="p"), defaults)
    assert (left_out.temperature, left_out.top_p, left_out.top_k) == (0.2, 0.9, -1)
    given = with_defaults(GenerateParams(prompt="p", temperature=1.0), defaults)
    assert (given.temperature, given.top_p) == (1.0, 0.9)


async def test_engine_applies_the_model_defaults(make_engine: Any) -> None:  # noqa: F811
    engine = make_engine("batch")
    body = {"prompt": PROMPTS[0], "max_new_tokens": 12, "echo": False}
    greedy = (await engine.generate(GenerateParams(**body, temperature=0)))["text"]
    engine.sampling_defaults = {"temperature": 0.0}
    assert (await engine.generate(GenerateParams(**body)))["text"] == greedy
    assert engine.details()["sampling_defaults"] == {"temperature": 0.0}


def test_an_older_default_model_conversion_gets_the_recommended_sampling(tmp_path: Path) -> None:
    from services.model_worker.default_model import RECOMMENDED_SAMPLING, add_recommended_sampling

    folder = write_config(tmp_path / "smol", {"bos_token_id": 1, "eos_token_id": 2})
    add_recommended_sampling(folder)
    assert read_sampling_defaults(folder) == RECOMMENDED_SAMPLING
    written = json.loads((folder / "generation_config.json").read_text())
    assert written["do_sample"] is True and written["eos_token_id"] == 2
