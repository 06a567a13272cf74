"""ModelEngine: concurrency limit, queue length, non-blocking generation, early close."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from services.model_worker.engine import ModelEngine
from services.model_worker.loader import load_model
from services.model_worker.template_choice import conversation_for
from shared.http_errors import APIError
from shared.schemas import GenerateParams


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture
def engine(loaded, tiny_model_dir: Path) -> ModelEngine:
    conv = conversation_for(str(tiny_model_dir), loaded.tokenizer)
    engine = ModelEngine(loaded, ["tiny"], conv, limit_concurrency=1, stream_interval=1)
    yield engine
    engine.shutdown()


def params(**kw: object) -> GenerateParams:
    return GenerateParams(**{"prompt": "Hello", "max_new_tokens": 40, "temperature": 0, **kw})


async def test_queue_length_counts_running_and_waiting(engine: ModelEngine) -> None:
    first = engine.stream(params())
    await anext(first)  # holds the only slot while we do not read further
    second = asyncio.create_task(engine.generate(params(max_new_tokens=3)))
    await asyncio.sleep(0.05)
    assert engine.status().queue_length == 2
    assert engine.limiter.running == 1 and engine.limiter.waiting == 1
    await first.aclose()  # the client went away: the slot is freed at once
    result = await asyncio.wait_for(second, 10)
    assert result["usage"]["completion_tokens"] <= 3
    assert engine.status().queue_length == 0


async def test_event_loop_stays_responsive_while_generating(engine: ModelEngine) -> None:
    stamps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            stamps.append(time.monotonic())
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await engine.generate(params(max_new_tokens=240))
    done.set()
    await task
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # The loop kept turning all through the generation: no long stall.
    assert len(stamps) >= 5
    assert max(gaps) < 0.15


async def test_closed_stream_cancels_generation_early(engine: ModelEngine) -> None:
    stream = engine.stream(params(max_new_tokens=200))
    first = await anext(stream)
    await stream.aclose()
    assert first["usage"]["completion_tokens"] < 200
    assert engine.limiter.running == 0


async def test_generation_errors_become_error_chunks(engine: ModelEngine, monkeypatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr("services.model_worker.engine.generate_stream", boom)
    result = await engine.generate(params())
    assert result["error_code"] == 50001
    assert "the GPU caught fire" in result["text"]
    assert engine.limiter.running == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"max_new_tokens": 10_000_000}, "max_new_tokens"),
        ({"stop_token_ids": [10**9]}, "stop_token_ids"),
    ],
)
def test_validation_names_the_field(engine: ModelEngine, kwargs: dict, param: str) -> None:
    with pytest.raises(APIError) as info:
        engine.validate(params(**kwargs))
    assert info.value.status_code == 400
    assert info.value.param == param
    assert param in info.value.message


def test_count_tokens_matches_the_tokenizer(engine: ModelEngine, loaded) -> None:
    text = "What is the capital of France?"
    assert engine.count_tokens(text) == len(loaded.tokenizer(text).input_ids)
