from pathlib import Path

import pytest

from shared.conversation import (
    Conversation,
    SeparatorStyle,
    chat_template_conversation,
    default_template_name,
    get_conv_template,
    register_conv_template,
)

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)


def test_vicuna_prompt_matches_the_spec_example_exactly() -> None:
    conv = get_conv_template("vicuna_v1.1")
    conv.append_message("USER", "Hello!")
    conv.append_message("ASSISTANT", "Hi!")
    conv.append_message("USER", "How are you?")
    conv.append_message("ASSISTANT", None)
    assert conv.get_prompt() == (
        f"{VICUNA_SYSTEM} USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:"
    )
    assert conv.stop_str is None and conv.stop_token_ids == []


def test_vicuna_fully_rendered_conversation_ends_with_eos_string() -> None:
    conv = get_conv_template("vicuna_v1.1")
    conv.append_message("USER", "Hi")
    conv.append_message("ASSISTANT", "Hello")
    assert conv.get_prompt().endswith("USER: Hi ASSISTANT: Hello</s>")


def test_one_shot_has_hidden_example_and_hash_stop() -> None:
    conv = get_conv_template("one_shot")
    conv.append_message("Human", "Hello!")
    conv.append_message("Assistant", None)
    prompt = conv.get_prompt()
    assert prompt.startswith("A chat between a curious human")
    assert "### Human: Got any creative ideas for a 10 year old’s birthday?" in prompt
    assert "Have a great celebration!" in prompt
    assert prompt.endswith("\n### Human: Hello!\n### Assistant:")
    assert conv.stop_str == "###"
    assert conv.offset == 2
    assert conv.to_chatbot_messages() == [{"role": "user", "content": "Hello!"}]
    assert conv.num_rounds() == 1  # the open slot counts: the round is under way


def test_get_conv_template_returns_independent_copies() -> None:
    a = get_conv_template("vicuna_v1.1")
    a.append_message("USER", "x")
    assert get_conv_template("vicuna_v1.1").messages == []


def test_unknown_template_and_duplicate_registration_are_errors() -> None:
    with pytest.raises(KeyError, match="unknown conversation template 'nope'"):
        get_conv_template("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_conv_template(Conversation(name="vicuna_v1.1"))


@pytest.mark.parametrize(
    ("name", "has_chat_template", "expected"),
    [
        ("CAMEL-13B-Combined-Data", False, "vicuna_v1.1"),
        ("camel-ai/CAMEL-33B-Combined-Data", True, "vicuna_v1.1"),
        ("/models/vicuna-13b-v1.1", False, "vicuna_v1.1"),
        ("/models/vicuna-7b-v0", False, "one_shot"),
        ("SmolLM2-135M-Instruct", True, "chat_template"),
        ("facebook/opt-125m", False, "one_shot"),
    ],
)
def test_default_template_choice(name: str, has_chat_template: bool, expected: str) -> None:
    assert default_template_name(name, has_chat_template) == expected


def test_chat_template_renders_like_the_tokenizer(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    conv = chat_template_conversation(
        tokenizer.chat_template, {"eos_token": tokenizer.eos_token}, [tokenizer.eos_token_id]
    )
    conv.system = "Be brief."
    conv.append_message("user", "What is the capital of France?")
    conv.append_message("assistant", "Paris.")
    conv.append_message("user", "And of Italy?")
    conv.append_message("assistant", None)
    expected = tokenizer.apply_chat_template(
        conv.to_openai_api_messages(), tokenize=False, add_generation_prompt=True
    )
    assert conv.get_prompt() == expected
    assert expected.endswith("<|im_start|>assistant\n")


def test_dict_round_trip_keeps_every_rendering_rule() -> None:
    conv = get_conv_template("one_shot")
    conv.append_message("Human", "Hi")
    conv.append_message("Assistant", None)
    clone = Conversation.from_dict(conv.dict())
    assert clone.get_prompt() == conv.get_prompt()
    assert clone.sep_style is SeparatorStyle.ADD_COLON_SINGLE
    assert clone.stop_str == "###"


def test_openai_messages_skip_open_slot_and_hidden_examples() -> None:
    conv = get_conv_template("one_shot")
    conv.append_message("Human", "Hi")
    conv.append_message("Assistant", None)
    messages = conv.to_openai_api_messages()
    assert messages[0]["role"] == "system"
    assert messages[1:] == [{"role": "user", "content": "Hi"}]


def test_fastchat_wire_shape_round_trips_and_reads_the_older_shape() -> None:
    conv = get_conv_template("vicuna_v1.1")
    wire = conv.dict()
    assert wire["name"] == "vicuna_v1.1" and wire["sep_style"] == 2  # FastChat's ADD_COLON_TWO
    assert wire["system_message"] == VICUNA_SYSTEM and wire["system_template"] == "{system_message}"
    assert Conversation.from_dict(wire).get_prompt() == conv.get_prompt()
    older = {"template_name": "t", "system": "S", "roles": ["A", "B"], "sep_style": "add_colon_two"}
    clone = Conversation.from_dict({**older, "sep": " ", "sep2": "</s>"})
    clone.append_message("A", "hi")
    clone.append_message("B", None)
    assert clone.get_prompt() == "S A: hi B:"


@pytest.mark.parametrize(
    "change",
    [
        {"sep_style": 0},
        {"sep_style": 20},
        {"sep_style": "2"},
        {"sep_style": True},
        {"roles": ["only one"]},
        {"roles": [1, 2]},
    ],
)
def test_unreadable_fastchat_templates_are_refused(change: dict) -> None:
    wire = {**get_conv_template("vicuna_v1.1").dict(), **change}
    with pytest.raises((ValueError, TypeError)):
        Conversation.from_dict(wire)
