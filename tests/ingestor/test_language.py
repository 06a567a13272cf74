"""Language and repetition filter on the offline detector."""

from __future__ import annotations

import pytest

from services.ingestor.rules.language import (
    LanguagePolicy,
    detect_language,
    language_drop_reason,
)
from tests.ingestor.builders import ENGLISH, FRENCH, conversation_record


def record(*values: str) -> dict:
    return conversation_record("x", *values)


def test_detects_english_and_french_offline() -> None:
    assert detect_language(" ".join(ENGLISH)) == "en"
    assert detect_language(FRENCH) == "fr"


def test_text_without_letters_is_unknown() -> None:
    assert detect_language("12345 6789 == ++") == "unknown"
    assert detect_language("") == "unknown"


def test_keeps_english_by_default_and_drops_other_languages() -> None:
    policy = LanguagePolicy()
    assert language_drop_reason(record(ENGLISH[0], ENGLISH[1]), policy) is None
    assert language_drop_reason(record(FRENCH, FRENCH), policy) == "language"
    assert language_drop_reason(record("1234", "5678"), policy) == "language"  # unknown


def test_keep_all_keeps_every_language() -> None:
    assert language_drop_reason(record(FRENCH, FRENCH), LanguagePolicy(keep_lang="all")) is None


def test_keep_another_language() -> None:
    policy = LanguagePolicy(keep_lang="fr")
    assert language_drop_reason(record(FRENCH, FRENCH), policy) is None
    assert language_drop_reason(record(ENGLISH[0], ENGLISH[1]), policy) == "language"


def test_skip_language() -> None:
    policy = LanguagePolicy(keep_lang="all", skip_lang="fr")
    assert language_drop_reason(record(FRENCH, FRENCH), policy) == "skipped_language"
    assert language_drop_reason(record(ENGLISH[0], ENGLISH[1]), policy) is None


@pytest.mark.parametrize(
    ("text", "dropped"), [("call 555555555 now", True), ("call 55555555 now", False)]
)
def test_repeated_digits_filter(text: str, dropped: bool) -> None:
    policy = LanguagePolicy(keep_lang="all", reduce_rep=True)
    reason = language_drop_reason(record(ENGLISH[0], text), policy)
    assert reason == ("repeated_digits" if dropped else None)
    assert language_drop_reason(record(ENGLISH[0], text), LanguagePolicy(keep_lang="all")) is None
