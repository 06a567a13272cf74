"""Packing: rows hold whole samples, positions restart, and a packed row's loss is the sum of its
samples' losses (attention never crosses samples)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from services.trainer.masking import IGNORE_INDEX, MaskedSample
from services.trainer.packing import PackedCollator, PackedRows, PaddedCollator, pack_best_fit


def random_samples(n: int, seed: int = 0, vocab: int = 300) -> list[MaskedSample]:
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        length = rng.randint(5, 40)
        ids = [rng.randrange(5, vocab) for _ in range(length)]
        cut = rng.randint(1, length - 1)  # prompt, then a reply with a loss
        samples.append(MaskedSample(ids, [IGNORE_INDEX] * cut + ids[cut:]))
    return samples


def test_best_fit_places_every_item_once_within_capacity() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    bins = pack_best_fit(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    lower_bound = -(-sum(lengths) // 128)
    assert len(bins) <= lower_bound * 1.05 + 1  # nearly full rows
    assert pack_best_fit(lengths, 128) == bins  # deterministic: resuming relies on it
    with pytest.raises(ValueError):
        pack_best_fit([129], 128)


def test_collator_restarts_positions_and_pads_with_a_segment_of_its_own() -> None:
    samples = random_samples(12)
    rows = PackedRows(samples, capacity=64)
    batch = PackedCollator(pad_token_id=0)([rows[0], rows[1]])
    assert set(batch) == {"input_ids", "labels", "position_ids", "real_tokens"}
    assert "attention_mask" not in batch  # so transformers derives per-sample masks
    width = batch["input_ids"].shape[1]
    for r in range(2):
        members = [samples[i] for i in rows.rows[r]]
        expected_positions = [p for s in members for p in range(len(s.input_ids))]
        pad = width - len(expected_positions)
        assert batch["position_ids"][r].tolist() == expected_positions + list(range(pad))
        labels = batch["labels"][r].tolist()
        start = 0
        for s in members:
            assert labels[start] == IGNORE_INDEX  # never predicted across samples
            assert labels[start + 1 : start + len(s.labels)] == s.labels[1:]
            start += len(s.input_ids)
        assert labels[start:] == [IGNORE_INDEX] * pad
    real = sum(len(samples[i].input_ids) for r in (0, 1) for i in rows.rows[r])
    assert batch["real_tokens"].item() == real

    flat = PackedCollator(pad_token_id=0, flatten=True)([rows[0], rows[1]])
    assert flat["input_ids"].shape == (1, real)


def test_padded_collator_pads_to_max_length_with_a_mask() -> None:
    samples = random_samples(3)
    items = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
    batch = PaddedCollator(pad_token_id=0, pad_to=64)(items)
    assert batch["input_ids"].shape == (3, 64)
    assert batch["attention_mask"].sum().item() == batch["real_tokens"].item()


def summed_loss(model, input_ids, labels, **kwargs) -> torch.Tensor:
    logits = model(input_ids=input_ids, **kwargs).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_equals_sum_of_per_sample_losses(tiny_model_dir: Path, attention) -> None:
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, attn_implementation=attention, dtype=torch.float32
    )
    model.config.use_cache = False
    model.eval()
    samples = random_samples(10, seed=3)
    rows = PackedRows(samples, capacity=96)
    batch = PackedCollator(pad_token_id=0)([rows[i] for i in range(len(rows))])
    assert batch["input_ids"].shape[0] >= 2
    with torch.no_grad():
        packed = summed_loss(
            model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"]
        )
        separate = sum(
            summed_loss(model, torch.tensor([s.input_ids]), torch.tensor([s.labels]))
            for s in samples
        )
        # Without restarting positions the samples would see each other: the loss differs.
        leaky = summed_loss(model, batch["input_ids"], batch["labels"])
    assert packed.item() == pytest.approx(separate.item(), rel=1e-5)
    assert abs(leaky.item() - separate.item()) > 1e-3
