"""Embeddings end to end on real processes: a controller, a tiny causal-LM worker and a worker
serving all-MiniLM-L6-v2 (embeddings only). The official ``openai`` SDK, unmodified, and raw
httpx; FastChat's wire format on the worker and through the controller's proxy route."""

from __future__ import annotations

import base64
import struct
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import redis
from fastapi.responses import Response

from services.model_worker.embedding import bundled_embedding_model
from shared.worker_protocol import encode_chunk
from tests.controller.stand_in import StandInWorker
from tests.support import FASTCHAT_PYTHON, ServiceProcess, free_port, post_json_text, wait_until

TINY, MINILM = "tiny", "all-MiniLM-L6-v2"


@dataclass
class Stack:
    url: str
    tiny_url: str
    minilm_url: str
    minilm: ServiceProcess


def _worker(
    model: Path, name: str, url: str, logs: Path, *extra: str
) -> tuple[str, ServiceProcess]:
    port = free_port()
    args = ["--port", str(port), "--model-path", str(model), "--controller-address", url]
    args += ["--heart-beat-interval", "0.5", "--model-names", name, *extra]
    return f"http://127.0.0.1:{port}", ServiceProcess(
        "services.model_worker", args, logs / f"{name}.log"
    )


@pytest.fixture(scope="module")
def stack(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    logs = tmp_path_factory.mktemp("embeddings-stack")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    controller = ServiceProcess(
        "services.controller",
        ["--port", str(port), "--redis-url", redis_url, "--redis-key-prefix", prefix],
        logs / "controller.log",
    ).start()
    tiny_url, tiny = _worker(tiny_model_dir, TINY, url, logs, "--embedding-batch-size", "2")
    minilm_url, minilm = _worker(
        bundled_embedding_model(), MINILM, url, logs, "--max-body-bytes", "200000"
    )
    try:
        controller.wait_http(f"{url}/test_connection")
        tiny.start().wait_http(f"{tiny_url}/health", timeout=120)
        minilm.start().wait_http(f"{minilm_url}/health", timeout=120)
        models = lambda: httpx.post(f"{url}/list_models").json()["models"]  # noqa: E731
        assert wait_until(lambda: {TINY, MINILM} <= set(models()), 15)
        yield Stack(url, tiny_url, minilm_url, minilm)
    finally:
        minilm.stop()
        tiny.stop()
        controller.stop()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)


def test_sdk_embeddings_of_a_string_a_list_and_token_ids(stack: Stack) -> None:
    client = sdk(stack)
    one = client.embeddings.create(model=MINILM, input="A man is eating food.")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    assert one.usage.prompt_tokens == one.usage.total_tokens > 0
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "A monkey plays drums."]
    many = client.embeddings.create(model=MINILM, input=texts)
    assert [d.index for d in many.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in many.data])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], one.data[0].embedding, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.6 > 0.2 > similarity[0, 2]
    ids = client.embeddings.create(model=TINY, input=[[5, 6, 7], [8, 9]])
    assert ids.usage.prompt_tokens == 5
    assert len(ids.data) == 2 and len(ids.data[0].embedding) == 64


def test_base64_and_float_are_the_same_vectors(stack: Stack) -> None:
    body = {"model": TINY, "input": ["hello", "camel"]}
    floats = httpx.post(f"{stack.url}/v1/embeddings", json=body).json()
    raw = httpx.post(f"{stack.url}/v1/embeddings", json={**body, "encoding_format": "base64"})
    assert raw.status_code == 200
    for as_float, as_b64 in zip(floats["data"], raw.json()["data"], strict=True):
        packed = base64.b64decode(as_b64["embedding"])
        decoded = struct.unpack(f"<{len(packed) // 4}f", packed)
        assert np.allclose(decoded, as_float["embedding"], atol=1e-6)
    assert floats["object"] == "list" and floats["model"] == TINY
    assert floats["usage"]["prompt_tokens"] == floats["usage"]["total_tokens"]


def test_fastchat_wire_format_on_the_worker_and_through_the_controller(stack: Stack) -> None:
    body = {"model": MINILM, "input": ["hello world", "good morning"]}
    direct = httpx.post(f"{stack.minilm_url}/worker_get_embeddings", json=body).json()
    assert set(direct) == {"embedding", "token_num"}
    assert len(direct["embedding"]) == 2 and direct["token_num"] == 8  # [CLS] x x [SEP], twice
    proxied = httpx.post(f"{stack.url}/worker_get_embeddings", json=body).json()
    assert np.allclose(proxied["embedding"], direct["embedding"], atol=1e-6)
    legacy = httpx.post(f"{stack.url}/v1/engines/{MINILM}/embeddings", json={"input": "hello"})
    assert legacy.status_code == 200 and len(legacy.json()["data"]) == 1


def test_an_input_over_the_context_is_a_400_naming_input(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack).embeddings.create(model=MINILM, input=["short", "word " * 600])
    assert caught.value.status_code == 400
    assert caught.value.param == "input"
    assert "maximum context length is 512" in caught.value.message
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": MINILM}, "input"),
        ({"model": MINILM, "input": ""}, "input"),
        ({"model": MINILM, "input": []}, "input"),
        ({"model": MINILM, "input": ["ok", ""]}, "input"),
        ({"model": MINILM, "input": [[]]}, "input"),
        ({"model": MINILM, "input": [1.5]}, "input"),
        ({"model": MINILM, "input": [[1, -2]]}, "input"),
        ({"model": MINILM, "input": 3}, "input"),
        ({"model": MINILM, "input": {"a": 1}}, "input"),
        ({"model": MINILM, "input": ["x"] * 2049}, "input"),
        ({"model": MINILM, "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": MINILM, "input": "x", "dimensions": 8}, "dimensions"),
        ({"model": MINILM, "input": [[10**7]]}, "input"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(stack: Stack, body: dict, param: str) -> None:
    response = httpx.post(f"{stack.url}/v1/embeddings", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "body",
    [{}, {"input": []}, {"input": "x"}, {"input": [""]}, {"input": [3.5]}, {"input": [[-1]]}],
)
def test_bad_worker_bodies_are_400_naming_input(stack: Stack, body: dict) -> None:
    response = httpx.post(f"{stack.minilm_url}/worker_get_embeddings", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["param"].startswith("input")  # input, or input[0] for an item
    assert httpx.post(f"{stack.minilm_url}/worker_get_status").status_code == 200


def test_malformed_json_unknown_model_and_body_limit(stack: Stack) -> None:
    bad = post_json_text(f"{stack.url}/v1/embeddings", b"{not json")
    assert bad.status_code == 400
    missing = httpx.post(f"{stack.url}/v1/embeddings", json={"model": "nope", "input": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
    huge = {"input": ["word " * 50] * 1000}
    too_big = httpx.post(f"{stack.minilm_url}/worker_get_embeddings", json=huge)
    assert too_big.status_code == 413
    assert httpx.post(f"{stack.minilm_url}/worker_get_embeddings", json={"input": ["x"]}).is_success


def test_an_embedding_model_refuses_generation_with_a_400(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack).chat.completions.create(
            model=MINILM, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert caught.value.param == "model"
    assert "embedding model" in caught.value.message
    direct = httpx.post(f"{stack.minilm_url}/worker_generate", json={"prompt": "Hi"})
    assert direct.status_code == 400 and direct.json()["param"] == "model"
    tgi = httpx.post(f"{stack.minilm_url}/generate", json={"inputs": "Hi"})
    assert tgi.status_code == 422 and "embedding model" in tgi.json()["error"]
    assert httpx.get(f"{stack.minilm_url}/health").json()["status"] == "ok"


def test_health_answers_while_a_large_batch_is_embedded(stack: Stack) -> None:
    """The embedding runs in the engine's thread: the event loop answers meanwhile."""
    body = {"input": ["a sentence about camels crossing the desert at night " * 8] * 120}
    done = threading.Event()
    answers: list[int] = []

    def embed() -> None:
        response = httpx.post(f"{stack.minilm_url}/worker_get_embeddings", json=body, timeout=300)
        answers.append(response.status_code)
        done.set()

    thread = threading.Thread(target=embed)
    thread.start()
    health_during = 0
    while not done.is_set():
        if httpx.get(f"{stack.minilm_url}/health", timeout=60).status_code == 200:
            health_during += 0 if done.is_set() else 1
    thread.join()
    assert answers == [200]
    assert health_during >= 1


class PeerProcess(ServiceProcess):
    """``python -m <module>`` run by another virtualenv's Python (FastChat's own)."""

    def __init__(self, python: Path, module: str, args: list[str], log_path: Path) -> None:
        super().__init__(module, args, log_path)
        self.python = python

    def start(self) -> PeerProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(self.python), "-m", self.module, *self.args],
            cwd=self.log_path.parent,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self


@pytest.mark.skipif(
    not FASTCHAT_PYTHON.exists(),
    reason=f"FastChat 0.2.36's virtualenv is missing ({FASTCHAT_PYTHON}): run make install",
)
def test_fastchats_openai_api_server_embeds_through_our_controller_and_worker(
    stack: Stack, tmp_path: Path
) -> None:
    """FastChat's real ``openai_api_server`` finds our worker through our controller and reads
    our ``/worker_get_embeddings``; the official SDK gets the same vectors from both servers."""
    port = free_port()
    server = PeerProcess(
        FASTCHAT_PYTHON,
        "fastchat.serve.openai_api_server",
        ["--host", "127.0.0.1", "--port", str(port), "--controller-address", stack.url],
        tmp_path / "fastchat-openai.log",
    ).start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120)
        theirs = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        texts = ["one camel", "two camels", "a desert", "an oasis", "the end"]  # two batches of 4
        a = theirs.embeddings.create(model=MINILM, input=texts, encoding_format="float")
        b = sdk(stack).embeddings.create(model=MINILM, input=texts, encoding_format="float")
        assert np.allclose([d.embedding for d in a.data], [d.embedding for d in b.data], atol=1e-6)
        assert a.usage.prompt_tokens == b.usage.prompt_tokens
    finally:
        server.stop()


def fastchat_answer(body: dict) -> Callable[[], Response]:
    """A stand-in worker's script: one JSON answer, as FastChat's worker sends it."""
    return lambda: Response(encode_chunk(body), media_type="application/octet-stream")


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ({"text": "CUDA out of memory", "error_code": 50002}, 500, "50002"),
        ({"embedding": "nope", "token_num": 1}, 502, "bad_worker"),
        ({"embedding": [[1.0], [2.0]], "token_num": 1}, 502, "bad_worker"),
    ],
)
def test_a_workers_failure_or_nonsense_is_an_openai_error(
    stack: Stack, answer: dict, status: int, code: str
) -> None:
    model = f"stand-in-{uuid.uuid4().hex[:6]}"
    double = StandInWorker([model], fastchat_answer(answer)).start().join(stack.url)
    try:
        response = httpx.post(f"{stack.url}/v1/embeddings", json={"model": model, "input": "x"})
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    finally:
        double.leave(stack.url)
        double.stop()


def test_any_worker_speaking_fastchats_protocol_serves_v1_embeddings(stack: Stack) -> None:
    model = f"stand-in-{uuid.uuid4().hex[:6]}"
    answer = {"embedding": [[0.6, 0.8], [1.0, 0.0]], "token_num": 7}
    double = StandInWorker([model], fastchat_answer(answer)).start().join(stack.url)
    try:
        result = sdk(stack).embeddings.create(model=model, input=["a", "b"])  # base64 by default
        assert np.allclose([d.embedding for d in result.data], answer["embedding"], atol=1e-7)
        assert result.usage.prompt_tokens == 7
    finally:
        double.leave(stack.url)
        double.stop()
