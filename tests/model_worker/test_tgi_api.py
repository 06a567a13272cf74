"""The TGI protocol on a worker, proven with the ``text-generation`` 0.7.0 client (installed
apart from the main environment, see the Makefile) and ``huggingface_hub.InferenceClient``."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from tests.support import REPO_ROOT

CLIENT_DIR = REPO_ROOT / ".venv" / "text-generation-client"
# Appended, not prepended: the main environment's packages win over the client folder's copies.
if str(CLIENT_DIR) not in sys.path:
    sys.path.append(str(CLIENT_DIR))

import text_generation  # noqa: E402  (make install puts it in .venv/text-generation-client)
from text_generation.errors import ValidationError as TGIValidationError  # noqa: E402

PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def sse_events(raw: bytes) -> list[dict]:
    return [
        json.loads(line[len("data:") :])
        for line in raw.decode().split("\n")
        if line.startswith("data:")
    ]


def test_client_generate_returns_details(worker_url: str) -> None:
    client = text_generation.Client(worker_url)
    response = client.generate(PROMPT, max_new_tokens=6, seed=1)
    details = response.details
    assert details.generated_tokens == len(details.tokens) <= 6
    assert details.finish_reason.value in {"length", "eos_token"}
    assert all(isinstance(t.logprob, float) and t.logprob <= 0 for t in details.tokens)
    assert details.prefill == []
    assert isinstance(response.generated_text, str)


def test_client_stream_matches_generate(worker_url: str) -> None:
    client = text_generation.Client(worker_url)
    whole = client.generate(PROMPT, max_new_tokens=8)
    events = list(client.generate_stream(PROMPT, max_new_tokens=8))
    assert [e.token.id for e in events] == [t.id for t in whole.details.tokens]
    assert all(e.generated_text is None and e.details is None for e in events[:-1])
    assert events[-1].generated_text == whole.generated_text
    assert events[-1].details.generated_tokens == len(events)


def test_stop_sequence_finish_reason(worker_url: str) -> None:
    client = text_generation.Client(worker_url)
    full = client.generate(PROMPT, max_new_tokens=24).generated_text
    assert len(full) >= 8, "the tiny model must say enough to pick a stop sequence from"
    stop = full[4:7]
    response = client.generate(PROMPT, max_new_tokens=24, stop_sequences=[stop])
    assert response.details.finish_reason.value == "stop_sequence"
    assert response.generated_text == full[: full.find(stop)]


def test_sampling_with_seed_is_reproducible_and_reports_the_seed(worker_url: str) -> None:
    client = text_generation.Client(worker_url)
    a = client.generate(PROMPT, max_new_tokens=10, do_sample=True, seed=42, temperature=0.9)
    b = client.generate(PROMPT, max_new_tokens=10, do_sample=True, seed=42, temperature=0.9)
    assert a.generated_text == b.generated_text
    assert a.details.seed == 42


def test_return_full_text_and_decoder_input_details(worker_url: str) -> None:
    client = text_generation.Client(worker_url)
    response = client.generate(
        PROMPT, max_new_tokens=3, return_full_text=True, decoder_input_details=True
    )
    assert response.generated_text.startswith(PROMPT)
    assert len(response.details.prefill) > 3
    assert "".join(t.text for t in response.details.prefill).endswith("assistant\n")


def test_server_side_validation_errors_map_to_client_errors(worker_url: str) -> None:
    client = text_generation.Client(worker_url)
    with pytest.raises(TGIValidationError, match="stop` supports up to 4"):
        client.generate(PROMPT, max_new_tokens=3, stop_sequences=list("abcde"))
    with pytest.raises(TGIValidationError, match="must be <= 256"):
        client.generate(PROMPT, max_new_tokens=1000)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"top_k": 0}, "`top_k` must be strictly positive"),
        ({"best_of": 2}, "`best_of` must be > 0 and <= 1"),
        ({"max_new_tokens": "x"}, "max_new_tokens"),
        ({"watermark": True}, "`watermark` is not supported"),
    ],
)
def test_raw_validation_errors(worker_url: str, parameters: dict, message: str) -> None:
    response = httpx.post(f"{worker_url}/generate", json={"inputs": "Hi", "parameters": parameters})
    assert response.status_code == 422
    body = response.json()
    assert body["error_type"] == "validation"
    assert body["error"].startswith("Input validation error:")
    assert message in body["error"]


def test_compat_route_lists_or_streams(worker_url: str) -> None:
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 4, "details": True}}
    listed = httpx.post(f"{worker_url}/", json=body)
    assert listed.status_code == 200
    assert isinstance(listed.json(), list) and "generated_text" in listed.json()[0]
    assert (
        int(listed.headers["x-generated-tokens"]) == listed.json()[0]["details"]["generated_tokens"]
    )
    streamed = httpx.post(f"{worker_url}/", json={**body, "stream": True})
    events = sse_events(streamed.content)
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["details"]["input_length"] > 0
    assert b"[DONE]" not in streamed.content
    bad = httpx.post(f"{worker_url}/generate_stream", json={"inputs": ""})
    assert bad.status_code == 200
    assert sse_events(bad.content) == [
        {"error": "Input validation error: `inputs` cannot be empty", "error_type": "validation"}
    ]


def test_info_tokenize_and_metrics(worker_url: str) -> None:
    info = httpx.get(f"{worker_url}/info").json()
    assert info["model_id"] == "tiny"
    assert info["max_total_tokens"] == 256
    assert info["max_stop_sequences"] == 4
    pieces = httpx.post(f"{worker_url}/tokenize", json={"inputs": "Hello world"}).json()
    assert "".join(p["text"] for p in pieces) == "Hello world"
    assert all(p["stop"] > p["start"] for p in pieces)
    metrics = httpx.get(f"{worker_url}/metrics").text
    for name in (
        "camelchat_requests_total",
        "camelchat_generated_tokens_total",
        "camelchat_time_to_first_token_seconds_bucket",
        "camelchat_inter_token_latency_seconds_bucket",
        "camelchat_queue_length",
        "camelchat_running_batch_size",
    ):
        assert name in metrics
    assert 'camelchat_requests_total{model="tiny",outcome="success"}' in metrics


def test_huggingface_hub_inference_client(worker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import InferenceClient, constants

    # It refuses every URL, loopback included, while offline mode is on.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(base_url=worker_url)
    output = client.text_generation(PROMPT, max_new_tokens=5, details=True)
    assert output.details.generated_tokens <= 5
    streamed = list(client.text_generation(PROMPT, max_new_tokens=5, stream=True))
    assert "".join(streamed) == output.generated_text
