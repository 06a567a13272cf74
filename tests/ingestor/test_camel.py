"""CAMEL chat and science conversion rules."""

from __future__ import annotations

import pytest

from services.ingestor.formats.camel import (
    SCAFFOLDING,
    convert_camel_chat,
    convert_camel_science,
    strip_scaffolding,
)
from services.ingestor.formats.records import RecordProblem
from tests.ingestor.builders import (
    camel_chat_record,
    camel_message,
    camel_messages,
    science_record,
)


def test_scaffolding_phrases_removed_in_order_as_plain_replace_all() -> None:
    # "\nInput: None" goes before "Input:"; the other order would leave " None" behind.
    assert strip_scaffolding("Instruction: Sort it.\nInput: None") == "Sort it."
    assert strip_scaffolding("Instruction: Sort it.\nInput: [3, 1]") == "Sort it. [3, 1]"
    assert strip_scaffolding("Solution: \n\nUse sorted().\nNext request.") == "Use sorted()."
    assert strip_scaffolding("Solution:\nStep one. Next request.") == "Step one."
    # replace-all, anywhere in the text
    assert strip_scaffolding("a Next request. b Next request.") == "a b"
    assert SCAFFOLDING[:2] == ("Instruction: ", "\nInput: None")


def test_chat_pairs_users_with_assistants_and_drops_the_task_done_turn() -> None:
    record = convert_camel_chat(camel_chat_record(2), "id-1")
    assert record["id"] == "id-1"
    roles = [t["from"] for t in record["conversations"]]
    assert roles == ["human", "gpt", "human", "gpt"]
    values = [t["value"] for t in record["conversations"]]
    assert not any(
        "CAMEL_TASK_DONE" in v or "Instruction:" in v or "Solution:" in v for v in values
    )
    assert not any(v.endswith("Next request.") or "Input: None" in v for v in values)


def test_chat_keys_are_lower_cased_and_read_in_file_order() -> None:
    record = {
        "MESSAGE_1": camel_message("USER", "first question"),
        "Message_2": camel_message("ASSISTANT", "first answer"),
        "message_3": camel_message("USER", "second question"),
        "message_4": camel_message("ASSISTANT", "second answer"),
        "Termination_Reason": "<CAMEL_TASK_DONE>",
        "num_messages": 4,
    }
    out = convert_camel_chat(record, "x")["conversations"]
    # the last message key is dropped by the <CAMEL_TASK_DONE> rule (lower-cased key matched)
    assert [t["value"] for t in out] == ["first question", "first answer", "second question"]
    assert [t["from"] for t in out] == ["human", "gpt", "human"]


def test_without_task_done_every_message_is_kept() -> None:
    out = convert_camel_chat(camel_chat_record(2, task_done=False), "x")["conversations"]
    assert len(out) == 4


def test_more_user_messages_add_one_extra_human_turn_with_the_last_one() -> None:
    record = camel_messages(
        ("USER", "u1"),
        ("ASSISTANT", "a1"),
        ("USER", "u2"),
        ("USER", "u3"),
        termination_reason="max_num_messages",
    )
    out = convert_camel_chat(record, "x")["conversations"]
    assert [(t["from"], t["value"]) for t in out] == [
        ("human", "u1"),
        ("gpt", "a1"),
        ("human", "u3"),
    ]


def test_more_assistant_messages_add_one_extra_gpt_turn_with_the_last_one() -> None:
    record = camel_messages(
        ("USER", "u1"),
        ("ASSISTANT", "a1"),
        ("ASSISTANT", "a2"),
        termination_reason="max_num_messages",
    )
    out = convert_camel_chat(record, "x")["conversations"]
    assert [(t["from"], t["value"]) for t in out] == [("human", "u1"), ("gpt", "a1"), ("gpt", "a2")]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"termination_reason": "x"}, "missing_fields"),
        ({"message_1": {"role_type": "USER"}}, "missing_fields"),
        ({"message_1": camel_message("SYSTEM", "hello")}, "wrong_roles"),
        ("not an object", "missing_fields"),
        (
            {
                "message_1": camel_message("USER", "<CAMEL_TASK_DONE>"),
                "termination_reason": "<CAMEL_TASK_DONE>",
            },
            "too_short",
        ),
    ],
)
def test_bad_chat_records_raise_with_a_reason(record: object, reason: str) -> None:
    with pytest.raises(RecordProblem) as info:
        convert_camel_chat(record, "x")
    assert info.value.reason == reason


def test_science_problem_and_solution_with_or_without_topic_key() -> None:
    record = science_record(3)
    out = convert_camel_science(record, "s-1")
    assert out == {
        "id": "s-1",
        "conversations": [
            {"from": "human", "value": record["message_1"]},
            {"from": "gpt", "value": record["message_2"]},
        ],
    }
    del record["topic;"]  # not required
    assert convert_camel_science(record, "s-2")["conversations"][0]["value"] == record["message_1"]
    # no text cleaning for science sets
    record["message_1"] = "Instruction: keep me"
    assert convert_camel_science(record, "s")["conversations"][0]["value"] == "Instruction: keep me"


def test_science_record_without_solution_is_missing_fields() -> None:
    with pytest.raises(RecordProblem) as info:
        convert_camel_science({"message_1": "only a problem"}, "x")
    assert info.value.reason == "missing_fields"
