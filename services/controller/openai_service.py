"""Core of the OpenAI-compatible API: choose a worker, render, generate, shape the answer.

The controller serves the API itself, straight to the chosen worker. A warm request costs the
registry's Redis lookups plus exactly one HTTP call, to the worker's /worker_generate_stream
(FastChat's API server made 4-5 calls per request and re-polled every worker on each
/v1/models). Each (worker, model)'s conversation template and context length are fetched once
and cached; a worker that cannot be reached is forgotten, so its replacement is asked again.
The one exception: a request without max_tokens also asks the worker to count the prompt's
tokens, to fill the context without truncating the prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import httpx
from pydantic import BaseModel
from redis.asyncio import Redis

from services.controller.failover import (
    Failover,
    is_retryable_transport_error,
    send_streaming,
)
from services.controller.metrics import Metrics
from services.controller.openai_convert import (
    SSE_DONE,
    ChunkWriter,
    DeltaTracker,
    finish_reason_of,
    generate_params,
    render_chat_prompt,
    sse_error,
    template_stops,
    usage_from,
)
from services.controller.openai_embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    embedding_response,
)
from services.controller.openai_errors import (
    OpenAIError,
    context_overflow,
    from_worker_code,
    from_worker_response,
    internal_error,
    model_not_found,
    model_unavailable,
    worker_broken,
    worker_timeout,
    worker_unreachable,
    worth_another_worker,
)
from services.controller.openai_protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ModelCard,
    ModelList,
    SamplingRequest,
    Usage,
)
from services.controller.registry import WorkerRegistry
from shared.contracts import REQUEST_ID_HEADER
from shared.conversation import Conversation
from shared.redis_keys import RedisKeys
from shared.settings import ControllerSettings
from shared.worker_protocol import aiter_chunks

log = logging.getLogger(__name__)

# Output budget when a request sets no max_tokens and the worker does not report its context.
FALLBACK_MAX_TOKENS = 256
GENERATE_PATH = "/worker_generate_stream"
EMBEDDINGS_PATH = "/worker_get_embeddings"

Answer = BaseModel | AsyncIterator[bytes]
T = TypeVar("T", bound=BaseModel)


class KnownModels:
    """Model names served recently (Redis sorted set: name -> last time seen served).

    A request for a known model that no worker serves right now gets 503, which clients retry;
    a name never served (or not for ``ttl`` seconds) gets 404. Shared by all controllers.
    """

    def __init__(self, redis: Redis, key: str, ttl: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl = ttl
        # Refresh a name in Redis at most this often per process; it only needs to beat the TTL.
        self._refresh = min(60.0, ttl / 10)
        self._touched: dict[str, float] = {}

    async def touch(self, models: Sequence[str]) -> None:
        now = time.time()
        fresh = [m for m in models if now - self._touched.get(m, 0.0) >= self._refresh]
        if not fresh:
            return
        await self._redis.zadd(self._key, {m: now for m in fresh})
        self._touched.update(dict.fromkeys(fresh, now))

    async def is_known(self, model: str) -> bool:
        seen = await self._redis.zscore(self._key, model)
        return seen is not None and time.time() - float(seen) < self._ttl

    async def prune(self) -> None:
        await self._redis.zremrangebyscore(self._key, "-inf", time.time() - self._ttl)


@dataclass
class WorkerFacts:
    """What a worker told us once about one of its models."""

    template: Conversation | None
    context_len: int | None


@dataclass
class RequestRecord:
    """Timing and outcome of one request: one structured log line and metrics at the end."""

    endpoint: str
    id: str
    request_id: str
    metrics: Metrics
    model: str = "-"
    stream: bool = False
    workers: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_at: float | None = None
    finished: bool = False

    def describe(self, request: SamplingRequest) -> None:
        self.model = request.model
        self.stream = bool(request.stream)
        self.ignored = sorted(request.model_extra or {})

    def first_token(self) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()

    def finish(self, status: int, usage: Usage | None = None, error: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        usage = usage or Usage()
        duration = time.perf_counter() - self.started
        ttft = None if self.first_at is None else self.first_at - self.started
        extra = f" error={error}" if error else ""
        if self.ignored:
            extra += f" ignored_fields={','.join(self.ignored)}"
        log.info(
            "event=openai_request id=%s request_id=%s endpoint=%s model=%s worker=%s stream=%s "
            "status=%d prompt_tokens=%d completion_tokens=%d ttft_ms=%s duration_ms=%.1f%s",
            self.id,
            self.request_id,
            self.endpoint,
            self.model,
            ",".join(dict.fromkeys(self.workers)) or "-",
            str(self.stream).lower(),
            status,
            usage.prompt_tokens,
            usage.completion_tokens,
            "-" if ttft is None else f"{ttft * 1000:.1f}",
            duration * 1000,
            extra,
        )
        m = self.metrics
        m.requests.labels(self.endpoint, str(status)).inc()
        m.duration.labels(self.endpoint).observe(duration)
        if ttft is not None:
            m.ttft.labels(self.endpoint).observe(ttft)
        if self.workers:
            m.prompt_tokens.labels(self.model).inc(usage.prompt_tokens)
            m.completion_tokens.labels(self.model).inc(usage.completion_tokens)


class WorkerGeneration:
    """One open ``/worker_generate_stream`` response, read as snapshots.

    Error chunks and broken streams raise OpenAIError; reading stops at the first snapshot with
    a finish reason (some workers repeat the last one), and a stream that ends without one is
    finished as "stop".
    """

    def __init__(self, worker: str, response: httpx.Response) -> None:
        self.worker = worker
        self._response = response
        self._chunks = cast(
            AsyncGenerator[dict[str, Any], None], aiter_chunks(response.aiter_bytes())
        )
        self._first: dict[str, Any] | None = None

    async def _next(self) -> dict[str, Any] | None:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            return None
        except httpx.TimeoutException as exc:
            raise worker_timeout(exc) from exc
        except httpx.HTTPError as exc:
            raise worker_broken(f"the stream broke ({type(exc).__name__})") from exc
        except ValueError as exc:
            raise worker_broken(f"unreadable chunk ({exc})") from exc
        if not isinstance(chunk, dict):
            raise worker_broken("a chunk is not a JSON object")
        if chunk.get("error_code"):
            raise from_worker_code(str(chunk.get("text", "")), int(chunk["error_code"]))
        return chunk

    async def peek(self) -> None:
        """Read the first snapshot, so that an immediate failure still gets a real status."""
        self._first = await self._next()
        if self._first is None:
            raise worker_broken("the stream ended without any output")

    async def snapshots(self) -> AsyncIterator[dict[str, Any]]:
        chunk, self._first = self._first, None
        last: dict[str, Any] | None = None
        while chunk is not None:
            last = chunk
            yield chunk
            if chunk.get("finish_reason") is not None:
                return
            chunk = await self._next()
        if last is not None:
            yield {**last, "finish_reason": "stop"}

    async def final(self) -> dict[str, Any]:
        last: dict[str, Any] = {}
        async for snapshot in self.snapshots():
            last = snapshot
        return last

    async def aclose(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self._chunks.aclose()
        await self._response.aclose()


async def close_all(generations: Sequence[WorkerGeneration]) -> None:
    for generation in generations:
        await generation.aclose()


async def gather_or_cancel(aws: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run concurrently; on the first failure cancel the rest and raise that failure."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise cast(BaseException, task.exception())
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def merge_snapshots(
    generations: Sequence[WorkerGeneration],
) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """Snapshots of several generations as they come, tagged with the choice index."""
    if len(generations) == 1:
        async for snapshot in generations[0].snapshots():
            yield 0, snapshot
        return
    queue: asyncio.Queue[tuple[int, dict[str, Any] | None, BaseException | None]]
    queue = asyncio.Queue(maxsize=16)

    async def pump(index: int, generation: WorkerGeneration) -> None:
        try:
            async for snapshot in generation.snapshots():
                await queue.put((index, snapshot, None))
        except Exception as exc:
            await queue.put((index, None, exc))
            return
        await queue.put((index, None, None))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        running = len(tasks)
        while running:
            index, snapshot, error = await queue.get()
            if error is not None:
                raise error
            if snapshot is None:
                running -= 1
            else:
                yield index, snapshot
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class OpenAIService:
    def __init__(
        self,
        registry: WorkerRegistry,
        known: KnownModels,
        client: httpx.AsyncClient,
        settings: ControllerSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self._registry = registry
        self._failover = Failover(registry, settings.dispatch_method, settings.worker_retries)
        self._known = known
        self._client = client
        self._settings = settings
        self.metrics = metrics or Metrics()
        self._facts: dict[tuple[str, str], WorkerFacts] = {}
        self._fetching: dict[tuple[str, str], asyncio.Future[WorkerFacts]] = {}

    @classmethod
    def create(
        cls,
        registry: WorkerRegistry,
        redis: Redis,
        keys: RedisKeys,
        client: httpx.AsyncClient,
        settings: ControllerSettings,
    ) -> OpenAIService:
        known = KnownModels(redis, keys.known_models, settings.known_model_ttl)
        return cls(registry, known, client, settings)

    # ---- models -------------------------------------------------------------------------

    async def list_models(self) -> ModelList:
        workers = await self._registry.workers()
        created: dict[str, float] = {}
        for worker in workers.values():
            for name in worker.model_names:
                since = worker.registered_at or time.time()
                created[name] = min(created.get(name, math.inf), since)
        await self._known.touch(sorted(created))
        await self._known.prune()
        return ModelList(data=[ModelCard(id=m, created=int(t)) for m, t in sorted(created.items())])

    async def get_model(self, model: str) -> ModelCard:
        for card in (await self.list_models()).data:
            if card.id == model:
                return card
        raise model_not_found(model)

    async def on_a_worker(
        self, model: str, record: RequestRecord, attempt: Callable[[str], Awaitable[T]]
    ) -> T:
        """``attempt(worker)`` on a worker of ``model``. One that fails before its first token
        (unreachable, 5xx or 429, a stream that ends or breaks first) is replaced by another, up
        to ``worker_retries`` times; then its failure is the answer. No worker at all: 404 if the
        model was never served, 503 if it was (clients retry)."""
        tried: list[str] = []
        failure: OpenAIError | None = None
        while (worker := await self._failover.next_worker(model, tried)) is not None:
            record.workers.append(worker)
            try:
                answer = await attempt(worker)
            except OpenAIError as exc:
                if not worth_another_worker(exc):
                    raise
                failure = exc
                continue
            await self._known.touch([model])
            return answer
        if failure is not None:
            raise failure
        if await self._known.is_known(model):
            raise model_unavailable(model)
        raise model_not_found(model)

    # ---- worker calls -------------------------------------------------------------------

    def forget(self, worker: str) -> None:
        for key in [k for k in self._facts if k[0] == worker]:
            del self._facts[key]

    async def _call_failed(self, worker: str, path: str, exc: httpx.HTTPError) -> OpenAIError:
        """A call that got no answer. Refused, or dropped before any response: the worker is
        gone or going (503; its cached facts are forgotten, and one that could not be connected
        to leaves routing). Slow: 504."""
        log.warning("event=worker_call_failed worker=%s path=%s error=%r", worker, path, exc)
        await self._failover.failed(worker, exc)
        if is_retryable_transport_error(exc):
            self.forget(worker)
            return worker_unreachable(exc)
        if isinstance(exc, httpx.TimeoutException):
            return worker_timeout(exc)
        return worker_broken(f"{path} failed ({type(exc).__name__})")

    async def _post(self, worker: str, path: str, body: dict[str, Any]) -> httpx.Response:
        self.metrics.worker_calls.labels(path).inc()
        try:
            return await self._client.post(
                f"{worker}{path}", json=body, timeout=self._settings.worker_status_timeout
            )
        except httpx.HTTPError as exc:
            raise await self._call_failed(worker, path, exc) from exc

    async def worker_facts(self, worker: str, model: str) -> WorkerFacts:
        """Template and context length of (worker, model): fetched once, shared by waiters."""
        key = (worker, model)
        if (facts := self._facts.get(key)) is not None:
            return facts
        future = self._fetching.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fetch_facts(worker, model))
            self._fetching[key] = future
            future.add_done_callback(lambda _: self._fetching.pop(key, None))
        return await asyncio.shield(future)

    async def _fetch_facts(self, worker: str, model: str) -> WorkerFacts:
        conv, details = await asyncio.gather(
            self._post(worker, "/worker_get_conv_template", {"model": model}),
            self._post(worker, "/model_details", {"model": model}),
        )
        template = context_len = None
        try:
            if conv.status_code == 200:
                template = Conversation.from_dict(conv.json()["conv"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("event=bad_conv_template worker=%s model=%s error=%r", worker, model, exc)
        try:
            if details.status_code == 200:
                context_len = int(details.json()["context_length"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("event=bad_model_details worker=%s model=%s error=%r", worker, model, exc)
        facts = WorkerFacts(template, context_len)
        if template is not None and context_len is not None:
            self._facts[(worker, model)] = facts
        return facts

    async def count_tokens(self, worker: str, model: str, prompt: str, prompt_param: str) -> int:
        response = await self._post(worker, "/count_token", {"model": model, "prompt": prompt})
        if response.status_code != 200:
            raise from_worker_response(
                response.status_code, response.content, dict(response.headers), prompt_param
            )
        try:
            return int(response.json()["count"])
        except (ValueError, KeyError, TypeError) as exc:
            raise worker_broken(f"/count_token answered {response.text[:200]!r}") from exc

    async def max_new_tokens(
        self,
        worker: str,
        model: str,
        prompt: str,
        requested: int | None,
        field_name: str,
        context_len: int | None,
        prompt_param: str,
    ) -> int:
        if requested is not None:
            if context_len is not None and requested >= context_len:
                raise OpenAIError(
                    400,
                    f"{field_name} is too large: {requested}. This model's maximum context "
                    f"length is {context_len} tokens, which must also hold the prompt.",
                    param=field_name,
                )
            return requested
        if context_len is None:
            return FALLBACK_MAX_TOKENS
        prompt_tokens = await self.count_tokens(worker, model, prompt, prompt_param)
        if prompt_tokens >= context_len:
            raise context_overflow(context_len, prompt_tokens, prompt_param)
        return context_len - prompt_tokens

    async def open_generation(
        self,
        worker: str,
        params: dict[str, Any],
        request_id: str,
        record: RequestRecord,
        prompt_param: str,
    ) -> WorkerGeneration:
        """Start the one generation call and read its first snapshot."""
        self.metrics.worker_calls.labels(GENERATE_PATH).inc()
        request = self._client.build_request(
            "POST",
            f"{worker}{GENERATE_PATH}",
            json=params,
            headers={REQUEST_ID_HEADER: request_id},
            timeout=self._settings.worker_api_timeout,
        )
        try:
            timeout = self._settings.worker_response_timeout
            response = await send_streaming(self._client, request, timeout)
        except httpx.HTTPError as exc:
            raise await self._call_failed(worker, GENERATE_PATH, exc) from exc
        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            raise from_worker_response(
                response.status_code, content, dict(response.headers), prompt_param
            )
        generation = WorkerGeneration(worker, response)
        try:
            await generation.peek()
        except BaseException:
            await generation.aclose()
            raise
        record.first_token()
        return generation

    # ---- endpoints ----------------------------------------------------------------------

    def record(self, endpoint: str, completion_id: str, request_id: str) -> RequestRecord:
        return RequestRecord(endpoint, completion_id, request_id, self.metrics)

    async def _guarded(self, record: RequestRecord, work: Awaitable[T]) -> T:
        """Log every failure once, and never let an unexpected one out as a bare 500."""
        try:
            return await work
        except OpenAIError as exc:
            record.finish(exc.status_code, error=exc.code or exc.type)
            raise
        except Exception:
            log.exception("event=openai_internal_error id=%s", record.id)
            record.finish(500, error="internal")
            raise internal_error() from None

    async def embeddings(
        self, request: EmbeddingRequest, embedding_id: str, request_id: str
    ) -> EmbeddingResponse:
        """All inputs on one worker of ``model`` (another if it fails to answer)."""
        record = self.record("embeddings", embedding_id, request_id)
        record.model = request.model
        record.ignored = sorted(request.model_extra or {})
        body = {"model": request.model, "input": request.input}

        async def attempt(worker: str) -> EmbeddingResponse:
            answer = await self._embed_on(worker, body, request_id)
            try:
                if answer.get("error_code"):
                    # FastChat's workers report a failure with 200 and an error code.
                    message = str(answer.get("text") or "embedding failed")
                    raise from_worker_code(message, int(answer["error_code"]), "input")
                vectors, token_num = answer["embedding"], int(answer["token_num"])
                result = embedding_response(
                    request.model, vectors, token_num, request.encoding_format
                )
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise worker_broken(f"{EMBEDDINGS_PATH} answered {str(answer)[:200]!r}") from exc
            if len(result.data) != len(request.input):
                raise worker_broken(
                    f"{len(result.data)} embeddings for {len(request.input)} inputs"
                )
            return result

        result = await self._guarded(record, self.on_a_worker(request.model, record, attempt))
        tokens = result.usage.prompt_tokens
        record.finish(200, Usage(prompt_tokens=tokens, total_tokens=tokens))
        return result

    async def _embed_on(self, worker: str, body: dict[str, Any], request_id: str) -> Any:
        self.metrics.worker_calls.labels(EMBEDDINGS_PATH).inc()
        try:
            response = await self._client.post(
                f"{worker}{EMBEDDINGS_PATH}",
                json=body,
                headers={REQUEST_ID_HEADER: request_id},
                timeout=self._settings.worker_api_timeout,
            )
        except httpx.HTTPError as exc:
            raise await self._call_failed(worker, EMBEDDINGS_PATH, exc) from exc
        if response.status_code != 200:
            raise from_worker_response(
                response.status_code, response.content, dict(response.headers), "input"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise worker_broken(f"{EMBEDDINGS_PATH} answered {response.text[:200]!r}") from exc

    async def chat_completion(
        self, request: ChatCompletionRequest, completion_id: str, request_id: str
    ) -> Answer:
        record = self.record("chat.completions", completion_id, request_id)

        async def attempt(worker: str) -> WorkerGeneration:
            facts = await self.worker_facts(worker, request.model)
            if facts.template is None:
                raise worker_broken("the worker has no conversation template for this model")
            prompt = render_chat_prompt(facts.template, request.messages)
            name, requested = request.max_tokens_field()
            max_new = await self.max_new_tokens(
                worker, request.model, prompt, requested, name, facts.context_len, "messages"
            )
            params = generate_params(request, prompt, max_new, template_stops(facts.template))
            return await self.open_generation(worker, params, request_id, record, "messages")

        async def prepare() -> list[WorkerGeneration]:
            record.describe(request)
            _check_stream_options(request)
            return [await self.on_a_worker(request.model, record, attempt)]

        generations = await self._guarded(record, prepare())
        return await self._answer(request, generations, record, chat=True)

    async def completion(
        self, request: CompletionRequest, completion_id: str, request_id: str
    ) -> Answer:
        record = self.record("completions", completion_id, request_id)

        def attempt_for(prompt: str) -> Callable[[str], Awaitable[WorkerGeneration]]:
            async def attempt(worker: str) -> WorkerGeneration:
                facts = await self.worker_facts(worker, request.model)
                max_new = await self.max_new_tokens(
                    worker,
                    request.model,
                    prompt,
                    request.max_tokens,
                    "max_tokens",
                    facts.context_len,
                    "prompt",
                )
                params = generate_params(request, prompt, max_new, echo=bool(request.echo))
                return await self.open_generation(worker, params, request_id, record, "prompt")

            return attempt

        async def prepare() -> list[WorkerGeneration]:
            record.describe(request)
            _check_stream_options(request)
            tasks = [
                asyncio.ensure_future(self.on_a_worker(request.model, record, attempt_for(p)))
                for p in request.prompts()
            ]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            opened = [r for r in results if isinstance(r, WorkerGeneration)]
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            if failure is not None:
                await close_all(opened)
                raise failure
            return opened

        generations = await self._guarded(record, prepare())
        return await self._answer(request, generations, record, chat=False)

    async def _answer(
        self,
        request: SamplingRequest,
        generations: list[WorkerGeneration],
        record: RequestRecord,
        chat: bool,
    ) -> Answer:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        writer = ChunkWriter(record.id, int(time.time()), request.model, chat, include_usage)
        if request.stream:
            return self._stream(generations, writer, record)

        async def collect() -> list[dict[str, Any]]:
            try:
                return await gather_or_cancel([g.final() for g in generations])
            finally:
                await close_all(generations)

        finals = await self._guarded(record, collect())
        usage = sum((usage_from(f) for f in finals), Usage())
        record.finish(200, usage)
        if chat:
            final = finals[0]
            return ChatCompletion(
                id=record.id,
                created=writer.created,
                model=request.model,
                choices=[
                    ChatChoice(
                        index=0,
                        message=AssistantMessage(content=str(final.get("text", ""))),
                        finish_reason=finish_reason_of(final) or "stop",
                    )
                ],
                usage=usage,
            )
        return Completion(
            id=record.id,
            created=writer.created,
            model=request.model,
            choices=[
                CompletionChoice(
                    index=i,
                    text=str(final.get("text", "")),
                    finish_reason=finish_reason_of(final) or "stop",
                )
                for i, final in enumerate(finals)
            ],
            usage=usage,
        )

    async def _stream(
        self, generations: list[WorkerGeneration], writer: ChunkWriter, record: RequestRecord
    ) -> AsyncIterator[bytes]:
        """SSE events: role chunk (chat), content deltas, an empty-delta finish chunk per
        choice, the usage chunk if asked, then [DONE]; an error becomes an ``error`` event."""
        trackers = [DeltaTracker() for _ in generations]
        # Latest snapshot with usage of each choice, so a stream cut short still logs what it
        # cost (read into a Usage only when needed, not once per token).
        with_usage: list[dict[str, Any]] = [{} for _ in generations]

        def total() -> Usage:
            return sum((usage_from(s) for s in with_usage), Usage())

        try:
            for index in range(len(generations)):
                if (start := writer.start(index)) is not None:
                    yield start
            async for index, snapshot in merge_snapshots(generations):
                reason = finish_reason_of(snapshot)
                delta = trackers[index].update(str(snapshot.get("text", "")), reason is not None)
                if snapshot.get("usage"):
                    with_usage[index] = snapshot
                if delta:
                    yield writer.content(index, delta)
                if reason is not None:
                    yield writer.finish(index, reason)
            if writer.include_usage:
                yield writer.usage(total())
            record.finish(200, total())
        except OpenAIError as exc:
            record.finish(exc.status_code, total(), error=exc.code or exc.type)
            yield sse_error(exc)
        except Exception:
            log.exception("event=openai_internal_error id=%s", record.id)
            record.finish(500, total(), error="internal")
            yield sse_error(internal_error())
        finally:
            await close_all(generations)
            # Still open here means the client went away mid-stream (499, as nginx logs it).
            record.finish(499, total(), error="client_disconnected")
        yield SSE_DONE


def _check_stream_options(request: SamplingRequest) -> None:
    if request.stream_options is not None and not request.stream:
        raise OpenAIError(
            400, "stream_options is only allowed when stream is true", param="stream_options"
        )
