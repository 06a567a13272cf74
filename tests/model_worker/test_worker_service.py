"""A model worker process serving the tiny model, called over HTTP without a controller."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from transformers import AutoTokenizer

from services.model_worker.loader import cpu_has_fast_bf16
from shared.conversation import Conversation
from shared.worker_protocol import iter_chunks

PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def post(url: str, body: object = None, **kwargs: object) -> httpx.Response:
    return httpx.post(url, json=body, timeout=60, **kwargs)


def test_status_details_and_token_count(worker_url: str, tiny_model_dir: Path) -> None:
    assert post(f"{worker_url}/worker_get_status").json() == {
        "model_names": ["tiny"],
        "speed": 1.0,
        "queue_length": 0,
    }
    details = post(f"{worker_url}/model_details").json()
    # The dtype chosen at start-up: WORKER_DTYPE (conftest: float32), or auto resolved by the
    # CPU's instruction set.
    configured = os.environ.get("WORKER_DTYPE", "auto")
    expected = (
        configured if configured != "auto" else "bfloat16" if cpu_has_fast_bf16() else "float32"
    )
    assert details == {
        "context_length": 256,
        "device": "cpu",
        "dtype": expected,
        "engine": "batch",
        "decode_path": "lean_llama",  # a LLaMA: the fast path
        "sampling_defaults": {},
    }
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    count = post(f"{worker_url}/count_token", {"prompt": "What is the capital of France?"}).json()
    assert count == {
        "count": len(tokenizer("What is the capital of France?").input_ids),
        "error_code": 0,
    }


def test_conv_template_renders_like_the_tokenizer(worker_url: str, tiny_model_dir: Path) -> None:
    conv = Conversation.from_dict(post(f"{worker_url}/worker_get_conv_template").json()["conv"])
    conv.append_message(conv.roles[0], "Hi")
    conv.append_message(conv.roles[1], None)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert conv.get_prompt() == expected == PROMPT
    assert conv.stop_token_ids == [tokenizer.eos_token_id]


def test_stream_is_nul_framed_with_usage_and_finish_reason(worker_url: str) -> None:
    body = {"prompt": PROMPT, "max_new_tokens": 6, "temperature": 0, "echo": False}
    with httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=body) as response:
        raw = response.read()
    assert raw.endswith(b"\0")
    chunks = list(iter_chunks([raw]))
    final = chunks[-1]
    assert set(final) == {"text", "error_code", "usage", "finish_reason"}
    assert final["finish_reason"] in {"stop", "length"}
    usage = final["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    plain = post(f"{worker_url}/worker_generate", body).json()
    assert plain["text"] == final["text"]
    assert plain["usage"] == usage


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "max_new_tokens": -1}, "max_new_tokens"),
        ({"prompt": "x", "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompt": "x", "max_new_tokens": 10**9}, "max_new_tokens"),
        ({"prompt": "x", "max_new_tokens": "many"}, "max_new_tokens"),
        ({"prompt": "x", "stop": 5}, "stop"),
        ({"prompt": "x", "stop": ["ok", 3]}, "stop"),
        ({"prompt": "x", "temperature": -0.5}, "temperature"),
        ({"prompt": "x", "top_p": 1.5}, "top_p"),
        ({"prompt": "x", "stop_token_ids": [-3]}, "stop_token_ids[0]"),
        ({"max_new_tokens": 4}, "prompt"),
        ({"prompt": 12}, "prompt"),
        ({"prompt": ""}, "prompt"),
    ],
)
@pytest.mark.parametrize("path", ["/worker_generate_stream", "/worker_generate"])
def test_bad_input_is_a_400_naming_the_field(
    worker_url: str, path: str, body: dict, param: str
) -> None:
    response = post(f"{worker_url}{path}", body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["param"] == param
    assert param.split("[")[0] in error["text"]
    assert error["error_code"] in {40001, 40302}


def test_malformed_json_and_wrong_shape_are_400s(worker_url: str) -> None:
    bad = httpx.post(
        f"{worker_url}/worker_generate",
        content=b'{"prompt": "x",',
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400
    assert "malformed JSON" in bad.json()["text"]
    listed = post(f"{worker_url}/worker_generate", ["not", "an", "object"])
    assert listed.status_code == 400


def test_worker_keeps_serving_after_bad_requests(worker_url: str) -> None:
    for body in ({"prompt": "x", "stop": 1}, {"prompt": "x", "max_new_tokens": -1}):
        assert post(f"{worker_url}/worker_generate", body).status_code == 400
    ok = post(f"{worker_url}/worker_generate", {"prompt": PROMPT, "max_new_tokens": 3})
    assert ok.status_code == 200
    assert ok.json()["error_code"] == 0
    assert post(f"{worker_url}/worker_get_status").json()["queue_length"] == 0


def test_prompt_longer_than_context_is_left_truncated_with_exact_usage(worker_url: str) -> None:
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 60
    body = {"prompt": long_prompt, "max_new_tokens": 16, "temperature": 0, "echo": False}
    result = post(f"{worker_url}/worker_generate", body).json()
    assert result["usage"]["prompt_tokens"] == 256 - 16


def test_health(worker_url: str) -> None:
    health = httpx.get(f"{worker_url}/health").json()
    assert health["status"] == "ok"
    assert health["model_names"] == ["tiny"]
