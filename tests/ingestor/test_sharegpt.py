"""ShareGPT cleaning: HTML to markdown, statuses, de-duplication."""

from __future__ import annotations

import pytest
from bs4.exceptions import ParserRejectedMarkup

from services.ingestor.formats import sharegpt
from services.ingestor.formats.records import RecordProblem
from services.ingestor.formats.sharegpt import (
    ShareGPTDeduplicator,
    clean_sharegpt,
    dedup_keys,
    html_to_markdown,
)


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"from": role, "value": value} for role, value in pairs]


def sample(*pairs: tuple[str, str], sid: str = "s1") -> dict:
    return {"id": sid, "conversations": turns(*pairs)}


def test_opening_div_and_span_tags_are_dropped_before_markdownify() -> None:
    html = '<div class="x"><p>Use <span class="hljs">my_var</span> here</p></div>'
    assert html_to_markdown(html) == "Use my\\_var here"


def test_chatgpt_code_blocks_are_repaired() -> None:
    html = (
        "<p>Run this:</p><pre><div><span>bash</span>Copy code<code>ls -la\n"
        "echo done\n</code></div></pre>"
    )
    assert html_to_markdown(html) == "Run this:\n\n```bash\nls -la\necho done\n```"


def test_code_block_without_a_label_keeps_an_empty_label() -> None:
    html = "<pre><div>Copy code<code>x = 1</code></div></pre>"
    assert html_to_markdown(html) == "```\nx = 1\n```"


def test_regenerate_counter_is_cut_only_at_the_start() -> None:
    assert html_to_markdown("<p>2 / 2</p><p>Hello there</p>") == "Hello there"
    assert html_to_markdown("<p>Pages 2 / 3 are done</p>") == "Pages 2 / 3 are done"


def test_copy_chars_noise_is_removed() -> None:
    assert html_to_markdown("<p>Copy12 chars / 3 words</p><p>Kept</p>") == "Kept"


def test_empty_code_blocks_are_removed() -> None:
    # a fence, "Copy code", optional blanks, a fence; the label repair runs first and needs code
    assert html_to_markdown("Before\n\n```Copy code```\n\nAfter") == "Before\n\nAfter"
    assert html_to_markdown("Before ```text Copy code``` After") == "Before  After"


def test_triple_newlines_collapse_and_text_is_stripped() -> None:
    assert html_to_markdown("a\n\n\nb  ") == "a\nb"


def test_clean_sample_converts_every_turn_and_keeps_the_id() -> None:
    out = clean_sharegpt(sample(("human", "<p>Hi</p>"), ("gpt", "<p><b>Hello</b></p>")), "new")
    assert out == {"id": "s1", "conversations": turns(("human", "Hi"), ("gpt", "**Hello**"))}


@pytest.mark.parametrize(
    "pairs",
    [
        [("human", "only one")],
        [("gpt", "greeting"), ("human", "hi")],  # first dropped -> 1 turn left
        [("human", "a"), ("human", "b")],  # last human dropped -> 1 left
        [],
    ],
)
def test_too_short(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(RecordProblem) as info:
        clean_sharegpt(sample(*pairs), "x")
    assert info.value.reason == "too_short"


def test_leading_non_human_and_trailing_human_turns_are_dropped() -> None:
    out = clean_sharegpt(
        sample(("system", "be nice"), ("human", "q"), ("gpt", "a"), ("human", "unanswered")), "x"
    )
    assert [t["from"] for t in out["conversations"]] == ["human", "gpt"]


@pytest.mark.parametrize(
    "roles", [("human", "gpt", "gpt", "gpt"), ("human", "system", "human", "gpt")]
)
def test_wrong_format(roles: tuple[str, ...]) -> None:
    with pytest.raises(RecordProblem) as info:
        clean_sharegpt(sample(*[(r, f"v{i}") for i, r in enumerate(roles)]), "x")
    assert info.value.reason == "wrong_format"


@pytest.mark.parametrize("word", ["OpenAI", "ChatGPT", "openai"])
def test_blocked_words(word: str) -> None:
    with pytest.raises(RecordProblem) as info:
        clean_sharegpt(sample(("human", "q"), ("gpt", f"I was trained by {word}.")), "x")
    assert info.value.reason == "blocked_words"


def test_parser_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def reject(_: str) -> str:
        raise ParserRejectedMarkup("bad markup")

    monkeypatch.setattr(sharegpt.markdownify, "markdownify", reject)
    monkeypatch.setattr(sharegpt, "markdownify_fast", reject)
    with pytest.raises(RecordProblem) as info:
        clean_sharegpt(sample(("human", "q"), ("gpt", "<p>a</p>")), "x")
    assert info.value.reason == "parser_error"


def test_markup_the_parser_rejects_is_a_parser_error() -> None:
    """html.parser's own assertion, through the fast path's fallback to markdownify."""
    with pytest.raises(RecordProblem) as info:
        clean_sharegpt(sample(("human", "q"), ("gpt", "<p>a</p><![x]")), "x")
    assert info.value.reason == "parser_error"


@pytest.mark.parametrize(
    "record",
    [{"id": "x"}, {"id": "x", "conversations": [{"from": "human"}]}, {"conversations": "text"}],
)
def test_missing_fields(record: dict) -> None:
    with pytest.raises(RecordProblem) as info:
        clean_sharegpt(record, "x")
    assert info.value.reason == "missing_fields"


def test_deduplication_by_id_then_by_first_reply_and_length() -> None:
    dedup = ShareGPTDeduplicator()
    first = sample(("human", "q"), ("gpt", "same answer"), sid="a")
    assert dedup.duplicate_reason(dedup_keys(first)) is None
    assert (
        dedup.duplicate_reason(dedup_keys(sample(("human", "other"), ("gpt", "x"), sid="a")))
        == "duplicate_id"
    )
    same_reply = sample(("human", "different q"), ("gpt", "same answer"), sid="b")
    assert dedup.duplicate_reason(dedup_keys(same_reply)) == "duplicate_value"
    longer = sample(("human", "q"), ("gpt", "same answer"), ("human", "q2"), ("gpt", "a2"), sid="c")
    assert (
        dedup.duplicate_reason(dedup_keys(longer)) is None
    )  # same first reply, different number of turns
