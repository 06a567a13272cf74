"""Stop-string handling on streamed text, independent of any model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopMatch:
    """Where to cut the text: ``end`` is the visible length; ``stopped`` ends generation."""

    end: int
    stopped: bool


def find_stop(text: str, stops: list[str]) -> StopMatch:
    """Cut at the earliest full stop string; otherwise hold back a trailing partial match.

    A partial match is a suffix of ``text`` that is a prefix of some stop string: it may become
    a stop string with the next tokens, so it is not shown yet (FastChat's partial-stop rule).
    """
    earliest = -1
    for stop in stops:
        pos = text.find(stop)
        if pos != -1 and (earliest == -1 or pos < earliest):
            earliest = pos
    if earliest != -1:
        return StopMatch(end=earliest, stopped=True)
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), hold, -1):
            if stop.startswith(text[len(text) - size :]):
                hold = size
                break
    return StopMatch(end=len(text) - hold, stopped=False)


def visible_text(text: str, final: bool) -> str:
    """Hold back a trailing replacement character: it is half of a multi-byte UTF-8 sequence."""
    if not final:
        return text.rstrip("\ufffd")
    return text
