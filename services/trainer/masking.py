"""Loss mask from token boundaries: only assistant replies and their end-of-turn token are trained.

The rendered conversation is tokenized once, as serving tokenizes prompts, with character offsets
from a fast tokenizer. A token is trained when it overlaps a reply's text, and so is every token
after the reply up to and including the first special token (the template's end of turn: ``</s>``
or the tokenizer's EOS for vicuna_v1.1, ``<|im_end|>`` for ChatML). The system prompt, user turns,
role prefixes and whatever a template puts after the end-of-turn token keep ``IGNORE_INDEX``.
The original instead counted tokens of string pieces, which silently drifted off the real token
boundaries whenever a piece tokenized differently on its own, and dropped such samples unseen.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.trainer.rendering import RenderedConversation, UnmaskableSample

IGNORE_INDEX = -100  # what torch's cross-entropy (and the HF loss) skip


@dataclass(frozen=True)
class MaskedSample:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_trained(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def special_token_ids(tokenizer: Any) -> frozenset[int]:
    """Every id the tokenizer treats as special (EOS, added chat markers such as ``<|im_end|>``)."""
    ids = set(tokenizer.all_special_ids)
    for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if token.special:
            ids.add(token_id)
    return frozenset(ids)


def mask_tokens(
    rendered: RenderedConversation,
    input_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    special_ids: frozenset[int],
    max_length: int,
) -> MaskedSample:
    """Labels for one tokenized conversation, truncated to ``max_length`` tokens."""
    # Tokens with an empty span (a BOS or EOS the tokenizer adds itself) sit where the previous
    # token ended, which keeps both lists sorted for bisection; they never start a reply.
    starts: list[int] = []
    ends: list[int] = []
    last_end = 0
    for start, end in offsets:
        if end > start:
            last_end = max(last_end, end)
            starts.append(start)
            ends.append(end)
        else:
            starts.append(last_end)
            ends.append(last_end)
    labels = [IGNORE_INDEX] * len(input_ids)
    for number, reply in enumerate(rendered.replies):
        first = bisect_right(ends, reply.start)  # first token ending after the reply starts
        after = bisect_left(starts, reply.content_end)  # first token starting after the text
        if first >= after:
            raise UnmaskableSample("reply_without_tokens", f"reply {number}")
        end_of_turn = after
        while (
            end_of_turn < len(input_ids)
            and starts[end_of_turn] < reply.turn_end
            and input_ids[end_of_turn] not in special_ids
        ):
            end_of_turn += 1
        if end_of_turn >= len(input_ids) or starts[end_of_turn] >= reply.turn_end:
            raise UnmaskableSample("no_end_of_turn_token", f"reply {number}")
        labels[first : end_of_turn + 1] = input_ids[first : end_of_turn + 1]
    sample = MaskedSample(list(input_ids[:max_length]), labels[:max_length])
    if sample.num_trained == 0:
        raise UnmaskableSample("truncated", f"no reply within the first {max_length} tokens")
    return sample


def tokenize_and_mask(
    tokenizer: Any, rendered: Sequence[RenderedConversation], max_length: int
) -> list[MaskedSample | UnmaskableSample]:
    """Tokenize many conversations in one call (fast tokenizers batch in Rust) and mask each."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("masking needs a fast tokenizer (character offsets)")
    if not rendered:
        return []
    encoded = tokenizer(
        [item.text for item in rendered], return_offsets_mapping=True, add_special_tokens=True
    )
    special_ids = special_token_ids(tokenizer)
    out: list[MaskedSample | UnmaskableSample] = []
    for item, ids, offsets in zip(
        rendered, encoded["input_ids"], encoded["offset_mapping"], strict=True
    ):
        try:
            out.append(mask_tokens(item, ids, offsets, special_ids, max_length))
        except UnmaskableSample as exc:
            out.append(exc)
    return out
