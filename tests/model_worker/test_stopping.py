import pytest

from services.model_worker.stopping import find_stop, visible_text


@pytest.mark.parametrize(
    ("text", "stops", "end", "stopped"),
    [
        ("Hello world", [], 11, False),
        ("Hello ### Human", ["###"], 6, True),
        ("Hello #", ["###"], 6, False),  # a partial stop is held back
        ("Hello ##", ["###"], 6, False),
        ("Hello", ["###"], 5, False),
        ("a USER: b", ["USER:", "a"], 0, True),  # earliest occurrence wins, not list order
        ("abc</", ["</s>", "xyz"], 3, False),
        ("#", ["###"], 0, False),
    ],
)
def test_find_stop(text: str, stops: list[str], end: int, stopped: bool) -> None:
    match = find_stop(text, stops)
    assert (match.end, match.stopped) == (end, stopped)


def test_partial_utf8_is_held_back_until_the_end() -> None:
    assert visible_text("caf\ufffd", final=False) == "caf"
    assert visible_text("caf\ufffd", final=True) == "caf\ufffd"
