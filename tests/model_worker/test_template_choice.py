"""Which conversation template a served model gets."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from services.model_worker.template_choice import conversation_for

PLAIN_TOKENIZER = SimpleNamespace(chat_template=None, eos_token_id=2)


def test_a_model_fine_tuned_here_is_served_with_the_template_it_was_trained_with(
    tmp_path: Path,
) -> None:
    (tmp_path / "camel_training.json").write_text(json.dumps({"template": "vicuna_v1.1"}))
    assert conversation_for(str(tmp_path), PLAIN_TOKENIZER).name == "vicuna_v1.1"


def test_without_a_training_summary_the_name_based_default_applies(tmp_path: Path) -> None:
    assert conversation_for(str(tmp_path / "my-model"), PLAIN_TOKENIZER).name == "one_shot"
    assert conversation_for(str(tmp_path / "camel-13b"), PLAIN_TOKENIZER).name == "vicuna_v1.1"


def test_an_explicit_template_wins_over_the_training_summary(tmp_path: Path) -> None:
    (tmp_path / "camel_training.json").write_text(json.dumps({"template": "vicuna_v1.1"}))
    assert conversation_for(str(tmp_path), PLAIN_TOKENIZER, "one_shot").name == "one_shot"


def test_an_unreadable_training_summary_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "camel_training.json").write_text("{not json")
    assert conversation_for(str(tmp_path), PLAIN_TOKENIZER).name == "one_shot"
