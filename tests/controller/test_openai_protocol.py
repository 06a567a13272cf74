"""Pure conversion logic of the OpenAI-compatible API: rendering, parameters, deltas, chunks,
errors. No processes, no network."""

from __future__ import annotations

import json
from typing import TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from services.controller.field_errors import InvalidFields, problems_of
from services.controller.openai_convert import (
    ChunkWriter,
    DeltaTracker,
    generate_params,
    presence_to_repetition,
    render_chat_prompt,
    sse_error,
    template_stops,
)
from services.controller.openai_errors import (
    OpenAIError,
    from_invalid_fields,
    from_worker_code,
    from_worker_response,
)
from services.controller.openai_protocol import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    Usage,
)
from shared.conversation import chat_template_conversation, get_conv_template
from tests.support import CHATML_TEMPLATE

M = TypeVar("M", bound=BaseModel)


def parse_request(model: type[M], body: bytes) -> M:
    """``body`` as the /v1 routes read it: the model, or their 400 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise from_invalid_fields(InvalidFields(problems_of(exc.errors()))) from None


def messages(*pairs: tuple[str, object]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": r, "content": c}) for r, c in pairs]


def chat(**fields: object) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return parse_request(ChatCompletionRequest, json.dumps(body).encode())


def bad_chat(**fields: object) -> OpenAIError:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(OpenAIError) as caught:
        parse_request(ChatCompletionRequest, json.dumps(body).encode())
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


# ---- rendering --------------------------------------------------------------------------


def test_vicuna_prompt_with_system_replaced_and_open_assistant_slot() -> None:
    prompt = render_chat_prompt(
        get_conv_template("vicuna_v1.1"),
        messages(
            ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "2+2?")
        ),
    )
    assert prompt == "Be brief. USER: Hi ASSISTANT: Hello!</s>USER: 2+2? ASSISTANT:"


def test_default_system_is_kept_without_a_system_message() -> None:
    template = get_conv_template("vicuna_v1.1")
    prompt = render_chat_prompt(template, messages(("user", "Hi")))
    assert prompt == f"{template.system} USER: Hi ASSISTANT:"


def test_text_parts_are_joined_and_same_role_messages_merged() -> None:
    prompt = render_chat_prompt(
        get_conv_template("vicuna_v1.1"),
        messages(
            ("developer", "Sys."),
            ("user", [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
            ("user", "c"),
        ),
    )
    assert prompt == "Sys. USER: a\nb\n\nc ASSISTANT:"


def test_chat_template_rendering_matches_chatml() -> None:
    template = chat_template_conversation(CHATML_TEMPLATE, {}, [])
    prompt = render_chat_prompt(template, messages(("system", "S"), ("user", "Hi")))
    assert prompt == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_one_shot_keeps_its_example_and_stop_string() -> None:
    template = get_conv_template("one_shot")
    prompt = render_chat_prompt(template, messages(("user", "Hi")))
    assert "birthday" in prompt
    assert prompt.endswith("### Human: Hi\n### Assistant:")
    assert template_stops(template) == ["###"]


@pytest.mark.parametrize(
    ("pairs", "param"),
    [
        ((("assistant", "Hello"), ("user", "Hi")), "messages"),
        ((("user", "Hi"), ("assistant", "Hello")), "messages"),
        ((("system", "only system"),), "messages"),
        ((("user", "Hi"), ("tool", "42")), "messages[1].role"),
        ((("user", [{"type": "image_url", "image_url": {"url": "x"}}]),), "messages[0].content[0]"),
        ((("user", "  "),), "messages[0].content"),
        ((("user", None),), "messages[0]"),
    ],
)
def test_unrenderable_conversations_are_400_naming_the_field(pairs: tuple, param: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        render_chat_prompt(get_conv_template("vicuna_v1.1"), messages(*pairs))
    assert caught.value.status_code == 400
    assert caught.value.param == param


# ---- parameters -------------------------------------------------------------------------


def test_chat_parameters_map_to_the_worker_body() -> None:
    request = chat(temperature=0.2, top_p=0.9, stop=["END", "###"], seed=-1, top_k=5)
    params = generate_params(request, "PROMPT", 33, ["###"])
    assert params == {
        "model": "m",
        "prompt": "PROMPT",
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 5,
        "max_new_tokens": 33,
        "stop": ["###", "END"],
        "echo": False,
        "seed": 2**63 - 1,
    }


def test_sampling_fields_left_out_stay_out_for_the_model_defaults() -> None:
    # The worker fills them in from the model's generation_config.json (else neutral values).
    params = generate_params(chat(), "P", 10)
    for name in ("temperature", "top_p", "top_k", "repetition_penalty"):
        assert name not in params
    assert "stop" not in params
    assert "seed" not in params


def test_presence_penalty_maps_to_repetition_penalty_unless_given_explicitly() -> None:
    assert presence_to_repetition(None) == 1.0
    assert presence_to_repetition(2.0) == 2.0
    assert presence_to_repetition(-2.0) == 0.5
    assert generate_params(chat(presence_penalty=0.4), "P", 1)["repetition_penalty"] == 1.2
    explicit = chat(presence_penalty=0.4, repetition_penalty=1.05)
    assert generate_params(explicit, "P", 1)["repetition_penalty"] == 1.05


def test_completion_defaults_and_prompt_list() -> None:
    body = {"model": "m", "prompt": ["a", "b"]}
    request = parse_request(CompletionRequest, json.dumps(body).encode())
    assert request.max_tokens == 16
    assert request.prompts() == ["a", "b"]
    assert generate_params(request, "a", 16, echo=True)["echo"] is True
    explicit_null = parse_request(
        CompletionRequest, b'{"model":"m","prompt":"a","max_tokens":null}'
    )
    assert explicit_null.max_tokens is None


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert chat(max_tokens=5, max_completion_tokens=7).max_tokens_field() == (
        "max_completion_tokens",
        7,
    )
    assert chat(max_tokens=5).max_tokens_field() == ("max_tokens", 5)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": 3}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 7}, "stop"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": ""}, "model"),
        # Integers the workers could not hold: a 400 here, not an overflow there.
        ({"seed": 2**63}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"max_tokens": 10**30}, "max_tokens"),
        ({"max_completion_tokens": 2**31}, "max_completion_tokens"),
        ({"top_k": 2**40}, "top_k"),
        ({"stop_token_ids": [1, 2**40]}, "stop_token_ids[1]"),
        ({"stop_token_ids": [-1]}, "stop_token_ids[0]"),
    ],
)
def test_bad_fields_are_400_naming_the_field(fields: dict, param: str) -> None:
    error = bad_chat(**fields)
    assert error.param == param
    assert param.split("[")[0] in error.message


def test_n_error_says_what_is_supported() -> None:
    assert "only n=1 is supported" in bad_chat(n=3).message


def test_zero_frequency_penalty_and_unknown_fields_are_accepted() -> None:
    request = chat(frequency_penalty=0, presence_penalty=0, metadata={"a": "b"}, user="u")
    assert request.model_extra == {"metadata": {"a": "b"}}


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_or_non_object_bodies_are_400(body: bytes) -> None:
    with pytest.raises(OpenAIError) as caught:
        parse_request(ChatCompletionRequest, body)
    assert caught.value.status_code == 400
    assert caught.value.param == "body"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"suffix": "tail"}, "suffix"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"logprobs": 1}, "logprobs"),
        ({"best_of": 2}, "best_of"),
        ({"max_tokens": 2**31}, "max_tokens"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_unsupported_completion_fields_are_refused(fields: dict, param: str) -> None:
    body = {"model": "m", "prompt": "x", **fields}
    with pytest.raises(OpenAIError) as caught:
        parse_request(CompletionRequest, json.dumps(body).encode())
    assert caught.value.param == param


# ---- deltas -----------------------------------------------------------------------------


def test_deltas_from_cumulative_snapshots() -> None:
    tracker = DeltaTracker()
    assert tracker.update("He") == "He"
    assert tracker.update("Hello") == "llo"
    assert tracker.update("Hello") == ""
    assert tracker.update("Hello world", final=True) == " world"


def test_partial_utf8_is_held_back_until_completed() -> None:
    tracker = DeltaTracker()
    deltas = [
        tracker.update("A\ufffd"),
        tracker.update("A\u4f60\ufffd"),
        tracker.update("A\u4f60\u597d"),
    ]
    assert deltas == ["A", "\u4f60", "\u597d"]
    assert "".join(deltas) == "A\u4f60\u597d"


def test_a_trailing_replacement_char_is_sent_at_the_end() -> None:
    tracker = DeltaTracker()
    assert tracker.update("x\ufffd") == "x"
    assert tracker.update("x\ufffd", final=True) == "\ufffd"


def test_rewritten_text_is_never_repeated() -> None:
    tracker = DeltaTracker()
    assert tracker.update("abcd") == "abcd"
    assert tracker.update("abXY") == ""
    assert tracker.update("abXYZ") == "Z"


# ---- chunk shapes -----------------------------------------------------------------------


def event(raw: bytes) -> dict:
    text = raw.decode()
    assert text.startswith("data: ") and text.endswith("\n\n")
    return json.loads(text[len("data: ") : -2])


def test_chat_chunk_shapes() -> None:
    writer = ChunkWriter("chatcmpl-1", 123, "m", chat=True)
    start, content, finish = (
        event(writer.start(0) or b""),
        event(writer.content(0, "Hi")),
        event(writer.finish(0, "length")),
    )
    for chunk in (start, content, finish):
        assert chunk["id"] == "chatcmpl-1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 123
        assert chunk["model"] == "m"
        assert "usage" not in chunk
    assert start["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert content["choices"][0]["delta"] == {"content": "Hi"}
    assert content["choices"][0]["finish_reason"] is None
    assert finish["choices"][0]["delta"] == {}
    assert finish["choices"][0]["finish_reason"] == "length"


def test_usage_chunk_and_null_usage_when_asked() -> None:
    writer = ChunkWriter("chatcmpl-1", 1, "m", chat=True, include_usage=True)
    assert event(writer.content(0, "x"))["usage"] is None
    usage = event(writer.usage(Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)))
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert usage["object"] == "chat.completion.chunk"


def test_text_completion_chunk_shapes() -> None:
    writer = ChunkWriter("cmpl-1", 1, "m", chat=False, include_usage=True)
    assert writer.start(0) is None
    content = event(writer.content(1, "abc"))
    assert content["object"] == "text_completion"
    assert content["choices"] == [
        {"index": 1, "text": "abc", "logprobs": None, "finish_reason": None}
    ]
    assert event(writer.finish(1, "stop"))["choices"][0] == {
        "index": 1,
        "text": "",
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert event(writer.usage(Usage()))["choices"] == []


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("include_usage", [True, False])
def test_content_chunk_template_gives_the_models_bytes(chat: bool, include_usage: bool) -> None:
    """The per-choice template gives byte for byte what building the models gives, for any
    text (quotes, escapes, control and non-ASCII characters, the marker's own shape) and any
    id or model name."""
    writer = ChunkWriter('cmpl-"1"', 7, 'm\\"ü', chat=chat, include_usage=include_usage)
    texts = ["", "Hi", ' "quoted" ', "back\\slash", "\n\t\r\x00\x1f\x7f", "é 中文 🙂",
             "camel-chat-text-0", "</script>"]  # fmt: skip
    for index in (0, 3):
        for text in texts:
            assert writer.content(index, text) == writer._model_content(index, text)


def test_in_stream_error_event_has_openai_shape() -> None:
    error = OpenAIError(500, "boom", "server_error", code="x")
    assert event(sse_error(error)) == {
        "error": {"message": "boom", "type": "server_error", "param": None, "code": "x"}
    }


# ---- worker error mapping ---------------------------------------------------------------


def test_worker_overload_is_429_with_retry_after_passed_on() -> None:
    body = json.dumps({"text": "queue full", "error_code": 42903}).encode()
    error = from_worker_response(429, body, {"retry-after": "2", "x-other": "1"}, "messages")
    assert (error.status_code, error.code, error.message) == (
        429,
        "engine_overloaded",
        "queue full",
    )
    assert error.headers == {"retry-after": "2"}


def test_worker_400_keeps_the_message_and_names_the_request_field() -> None:
    body = json.dumps(
        {"text": "max_new_tokens: too big", "error_code": 40302, "param": "max_new_tokens"}
    ).encode()
    error = from_worker_response(400, body, {}, "messages")
    assert (error.status_code, error.param, error.message) == (
        400,
        "max_tokens",
        "max_new_tokens: too big",
    )
    empty = json.dumps(
        {"text": "prompt: must not be empty", "error_code": 40001, "param": "prompt"}
    )
    assert from_worker_response(400, empty.encode(), {}, "messages").param == "messages"


def test_worker_server_errors_are_retryable_statuses() -> None:
    assert from_worker_response(500, b"oops", {}, "prompt").status_code == 502
    assert from_worker_response(503, b"{}", {"Retry-After": "1"}, "prompt").headers == {
        "Retry-After": "1"
    }


@pytest.mark.parametrize(
    ("code", "status", "error_code"),
    [
        (40303, 400, "context_length_exceeded"),
        (40001, 400, None),
        (42903, 429, "engine_overloaded"),
        (42901, 429, "rate_limit_exceeded"),
        (50001, 500, "50001"),
        (50002, 500, "50002"),
        (50005, 503, "50005"),
        (50006, 504, "50006"),
    ],
)
def test_in_stream_worker_codes_map_to_statuses(code: int, status: int, error_code: str) -> None:
    error = from_worker_code("msg", code)
    assert (error.status_code, error.code) == (status, error_code)
