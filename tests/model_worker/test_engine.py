"""ModelEngine in both modes: batching correctness, admission, cancellation, responsiveness."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.model_worker.engine import ModelEngine
from services.model_worker.errors import EngineOverloaded, InvalidRequest
from services.model_worker.loader import LoadedModel
from services.model_worker.template_choice import conversation_for
from shared.schemas import GenerateParams

MODES = ["batch", "sequential"]


class SlowModel:
    """The real tiny model, made slower per forward pass so that scheduling can be observed."""

    def __init__(self, model: Any, delay: float) -> None:
        self._model, self._delay = model, delay
        self.device, self.config = model.device, model.config

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        return self._model(*args, **kwargs)


def slowed(forward: Any, delay: float) -> Any:
    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(delay)
        return forward(*args, **kwargs)

    return slow


@pytest.fixture(params=["lean_llama", "transformers"])
def make_engine(request: Any, tiny: LoadedModel, tiny_model_dir: Path) -> Iterator[Any]:
    """Engines on the tiny LLaMA; batch mode runs on both decode paths (the fast one and
    transformers' forward). ``delay`` slows every forward pass."""
    engines: list[ModelEngine] = []

    def make(mode: str = "batch", delay: float = 0.0, **kwargs: Any) -> ModelEngine:
        model = SlowModel(tiny.model, delay) if delay and mode != "batch" else tiny.model
        conv = conversation_for(str(tiny_model_dir), tiny.tokenizer)
        engine = ModelEngine(
            dataclasses.replace(tiny, model=model),
            ["tiny"],
            conv,
            mode=mode,
            **{
                "stream_interval": 1,
                "fast_path": request.param == "lean_llama",
                "prefix_cache_mb": 16,
                **kwargs,
            },
        )
        if mode == "batch":
            assert engine.details()["decode_path"] == request.param
            if delay:
                rows = engine._scheduler._batch
                rows.forward = slowed(rows.forward, delay)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.shutdown()


def params(**kw: object) -> GenerateParams:
    return GenerateParams(
        **{"prompt": "Hello", "max_new_tokens": 40, "temperature": 0, "echo": False, **kw}
    )


PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "def add(a, b):\n    return a + b\n",
]


async def test_greedy_output_does_not_depend_on_the_batch(make_engine: Any) -> None:
    engine = make_engine("batch", max_batch_size=8)
    alone = [(await engine.generate(params(prompt=p, max_new_tokens=24)))["text"] for p in PROMPTS]
    noise = [
        params(prompt="Bonjour, ça va?", max_new_tokens=60, temperature=1.0, seed=3),
        params(prompt="Instruction: write a poem.", max_new_tokens=50, top_k=5, temperature=0.8),
        params(prompt="0123456789", max_new_tokens=30, repetition_penalty=1.3),
    ]
    tasks = [asyncio.create_task(engine.generate(p)) for p in noise]
    await asyncio.sleep(0.01)  # the greedy requests join a batch that is already running
    crowded = await asyncio.gather(
        *(engine.generate(params(prompt=p, max_new_tokens=24)) for p in PROMPTS)
    )
    await asyncio.gather(*tasks)
    assert [c["text"] for c in crowded] == alone
    sequential = make_engine("sequential")
    assert [
        (await sequential.generate(params(prompt=p, max_new_tokens=24)))["text"] for p in PROMPTS
    ] == alone


async def test_requests_arriving_together_are_prefilled_together_with_the_same_output(
    make_engine: Any,
) -> None:
    """Prompts of different lengths, submitted at once, share one left-padded prefill pass;
    each greedy answer equals the one it gets alone; a 1-token request ends at its prefill."""
    engine = make_engine("batch", max_batch_size=8, prefill_chunk=512)
    prompts = [*PROMPTS, "Hi", "A much longer prompt " * 5, "x"]
    alone = [(await engine.generate(params(prompt=p, max_new_tokens=16)))["text"] for p in prompts]
    passes = []
    rows = engine._scheduler._batch
    forward = rows.forward

    def counting(*args: Any, **kw: Any) -> Any:
        passes.append((args[0] if args else kw["input_ids"]).shape)
        return forward(*args, **kw)

    rows.forward = counting
    together = await asyncio.gather(
        *(engine.generate(params(prompt=p, max_new_tokens=16)) for p in prompts),
        engine.generate(params(prompt="one token", max_new_tokens=1)),
    )
    assert [t["text"] for t in together[:-1]] == alone
    assert together[-1]["usage"]["completion_tokens"] == 1
    assert any(shape[0] > 1 and shape[1] > 1 for shape in passes), "no batched prefill ran"


async def test_seeded_sampling_does_not_depend_on_the_batch(make_engine: Any) -> None:
    engine = make_engine("batch")
    sampled = params(prompt=PROMPTS[0], max_new_tokens=20, temperature=0.9, seed=11)
    alone = (await engine.generate(sampled))["text"]
    others = [engine.generate(params(prompt=p, max_new_tokens=30)) for p in PROMPTS]
    together = await asyncio.gather(engine.generate(sampled), *others)
    assert together[0]["text"] == alone


async def test_short_request_joins_and_leaves_while_a_long_one_runs(make_engine: Any) -> None:
    engine = make_engine("batch", delay=0.005)
    long_task = asyncio.create_task(engine.generate(params(max_new_tokens=150)))
    await asyncio.sleep(0.1)
    short = await engine.generate(params(prompt=PROMPTS[2], max_new_tokens=5))
    assert short["usage"]["completion_tokens"] == 5
    assert not long_task.done()  # the short one finished first: it did not wait its turn
    assert engine.running == 1
    await long_task


def record_passes(engine: ModelEngine) -> list[str]:
    """The kind of each forward pass the engine's scheduler runs from now on, in order."""
    rows = engine._scheduler._batch
    passes: list[str] = []
    forward = rows.forward

    def recording(*args: Any, **kw: Any) -> Any:
        ids = args[0] if args else kw["input_ids"]
        passes.append("prefill" if ids.shape[1] > 1 else "decode")
        return forward(*args, **kw)

    rows.forward = recording
    return passes


async def test_requests_arriving_together_all_start_before_the_next_decode_step(
    make_engine: Any,
) -> None:
    """Prompts that do not fit one prefill pass together are prefilled one pass after another,
    within the prefill budget, before the first of them decodes its second token (not a decode
    step between every two passes, which held the last one's first token back)."""
    engine = make_engine("batch", delay=0.02, prefill_chunk=16, prefill_budget=2048)
    passes = record_passes(engine)
    prompts = [f"Question {i}: what is {i} plus {i}?" for i in range(5)]
    results = await asyncio.gather(
        *(engine.generate(params(prompt=p, max_new_tokens=4)) for p in prompts)
    )
    assert all(r["usage"]["completion_tokens"] == 4 for r in results)
    prefills = [i for i, kind in enumerate(passes) if kind == "prefill"]
    assert len(prefills) >= 3, passes  # the prompts did take several passes
    assert prefills[-1] < passes.index("decode"), passes


async def test_prefill_budget_lets_running_streams_decode_between_prefill_passes(
    make_engine: Any,
) -> None:
    engine = make_engine("batch", delay=0.02, prefill_chunk=16, prefill_budget=16)
    passes = record_passes(engine)
    prompts = [f"Question {i}: what is {i} plus {i}?" for i in range(5)]
    await asyncio.gather(*(engine.generate(params(prompt=p, max_new_tokens=4)) for p in prompts))
    prefills = [i for i, kind in enumerate(passes) if kind == "prefill"]
    assert "decode" in passes[prefills[0] : prefills[-1]], passes


async def submitted_apart(engine: ModelEngine, prompts: list[str], apart: float) -> list[dict]:
    """Requests arriving one after another ``apart`` seconds apart, as a controller relays a
    burst; their results once all are done."""
    tasks = []
    for prompt in prompts:
        tasks.append(asyncio.create_task(engine.generate(params(prompt=prompt, max_new_tokens=3))))
        await asyncio.sleep(apart)
    return await asyncio.gather(*tasks)


@pytest.mark.parametrize("gather", [False, True])
async def test_a_burst_arriving_one_by_one_shares_the_first_prefill_pass(
    make_engine: Any, gather: bool
) -> None:
    """With the gather window, requests arriving a little apart wait for each other and share
    one prefill pass; without it each one that finds the scheduler idle starts alone."""
    window = {"gather_gap_ms": 2000, "gather_max_ms": 5000} if gather else {}
    engine = make_engine("batch", **window)
    passes = record_passes(engine)
    prompts = [f"Question {i}: what is {i} plus {i}?" for i in range(4)]
    results = await submitted_apart(engine, prompts, apart=0.2)
    assert all(r["usage"]["completion_tokens"] == 3 for r in results)
    assert passes.count("prefill") == (1 if gather else len(prompts)), passes


async def test_the_gather_window_ends_when_a_pass_is_full_or_at_its_longest(
    make_engine: Any,
) -> None:
    """A full pass starts at once however long the window; a lone request waits no longer than
    ``gather_max_ms`` for company."""
    engine = make_engine("batch", max_batch_size=2, gather_gap_ms=60_000, gather_max_ms=60_000)
    prompts = [f"Question {i}: what is {i} plus {i}?" for i in range(2)]  # a full batch
    results = await asyncio.wait_for(submitted_apart(engine, prompts, apart=0.0), timeout=30)
    assert all(r["usage"]["completion_tokens"] == 3 for r in results)

    engine = make_engine("batch", gather_gap_ms=60_000, gather_max_ms=300)
    started = time.monotonic()
    result = await asyncio.wait_for(engine.generate(params(max_new_tokens=2)), timeout=30)
    assert result["usage"]["completion_tokens"] == 2
    assert time.monotonic() - started >= 0.3


async def test_long_prefill_is_chunked_between_decode_steps(make_engine: Any) -> None:
    engine = make_engine("batch", delay=0.003, prefill_chunk=8, prefill_budget=16)
    arrivals: list[float] = []

    async def streaming() -> None:
        async for _ in engine.open_stream(params(max_new_tokens=120)):
            arrivals.append(time.monotonic())

    runner = asyncio.create_task(streaming())
    await asyncio.sleep(0.05)
    submitted = time.monotonic()
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 20  # ~200 tokens, 25 chunks
    stream = engine.open_stream(params(prompt=long_prompt, max_new_tokens=2))
    first = await anext(stream)
    first_token_at = time.monotonic()
    await stream.aclose()
    during_prefill = [t for t in arrivals if submitted <= t <= first_token_at]
    assert first["usage"]["prompt_tokens"] > 150
    assert len(during_prefill) >= 10  # the running stream kept getting tokens
    await runner


@pytest.mark.parametrize("mode", MODES)
async def test_queue_length_and_refusal_when_the_queue_is_full(make_engine: Any, mode: str) -> None:
    engine = make_engine(mode, delay=0.005, max_batch_size=1, max_queue=1)
    running = engine.open_stream(params(max_new_tokens=200))
    await anext(running)
    waiting = asyncio.create_task(engine.generate(params(max_new_tokens=2)))
    await asyncio.sleep(0.05)
    assert (engine.running, engine.waiting) == (1, 1)
    assert engine.status().queue_length == 2
    with pytest.raises(EngineOverloaded) as info:
        engine.open_stream(params())
    assert info.value.code == 42903
    assert info.value.retry_after == 1
    assert (info.value.running, info.value.waiting, info.value.limit) == (1, 1, 1)
    assert "overloaded" in info.value.message
    await running.aclose()  # the client went away: its slot goes to the waiting request
    result = await asyncio.wait_for(waiting, 10)
    assert result["usage"]["completion_tokens"] <= 2
    await asyncio.sleep(0.05)
    assert engine.status().queue_length == 0


async def test_admission_counts_a_request_before_its_stream_is_read(make_engine: Any) -> None:
    """Two requests arriving together cannot both take the last slot."""
    engine = make_engine("batch", delay=0.005, max_batch_size=1, max_queue=0)
    first = engine.open_stream(params(max_new_tokens=50))
    with pytest.raises(EngineOverloaded):
        engine.open_stream(params())
    await first.aclose()
    # The unread stream is not cancelled (its generator never started): it runs its 50 tokens.
    # Wait for that generously: a loaded machine takes seconds.
    for _ in range(1500):
        if engine.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert engine.in_flight == 0
    assert (await engine.generate(params(max_new_tokens=2)))["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("mode", MODES)
async def test_closed_stream_stops_generation_early(make_engine: Any, mode: str) -> None:
    engine = make_engine(mode, delay=0.002)
    stream = engine.open_stream(params(max_new_tokens=200))
    first = await anext(stream)
    await stream.aclose()
    assert first["usage"]["completion_tokens"] < 200
    for _ in range(100):
        if engine.running == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.running == 0


@pytest.mark.parametrize("mode", MODES)
async def test_event_loop_stays_responsive_while_generating(make_engine: Any, mode: str) -> None:
    engine = make_engine(mode)
    stamps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            stamps.append(time.monotonic())
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(engine.generate(params(max_new_tokens=200)) for _ in range(3)))
    done.set()
    await task
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) >= 5
    assert max(gaps) < 0.15  # the loop kept turning all through the generation


@pytest.mark.parametrize("mode", MODES)
async def test_generation_errors_become_error_chunks_and_serving_goes_on(
    make_engine: Any, mode: str, tiny: LoadedModel
) -> None:
    engine = make_engine(mode)
    calls = {"n": 0}
    real = tiny.model.forward

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the GPU caught fire")
        return real(*args, **kwargs)

    if mode == "batch":  # the scheduler's one model call, on either decode path
        rows = engine._scheduler._batch
        real = rows.forward
        rows.forward = failing_once
    else:
        tiny.model.forward = failing_once
    try:
        result = await engine.generate(params())
        assert result["error_code"] == 50001
        assert "the GPU caught fire" in result["text"]
        again = await engine.generate(params(max_new_tokens=3))
        assert again["error_code"] == 0
    finally:
        if mode != "batch":
            del tiny.model.forward
    assert engine.running == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"max_new_tokens": 10_000_000}, "max_new_tokens"),
        ({"stop_token_ids": [10**9]}, "stop_token_ids"),
    ],
)
def test_validation_names_the_field(make_engine: Any, kwargs: dict, param: str) -> None:
    engine = make_engine()
    with pytest.raises(InvalidRequest) as info:
        engine.validate(params(**kwargs))
    assert info.value.code in {40001, 40302}
    assert info.value.param == param
    assert param in info.value.message


def test_count_tokens_matches_the_tokenizer(make_engine: Any, tiny: LoadedModel) -> None:
    text = "What is the capital of France?"
    assert make_engine().count_tokens(text) == len(tiny.tokenizer(text).input_ids)
