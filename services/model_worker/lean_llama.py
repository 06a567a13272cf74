"""A lean forward pass for LLaMA-style decoders, over a static per-row KV cache.

Transformers' forward is general: per step it builds masks, grows every layer's cache with
``torch.cat`` (a copy of the whole cache per token), repeats the shared key/value heads for
grouped-query attention, and calls a few thousand small modules. On a CPU, for a small model,
that overhead costs more than the arithmetic. This module computes the same function with the
model's own weights and far fewer operations:

- q/k/v and gate/up projections are each one matrix product (the fused weights share storage
  with the model's, so nothing is duplicated);
- keys and values are written in place into preallocated ``[rows, kv_heads, capacity, head_dim]``
  buffers (``RowCache``), each row at its own length, and read as views: no per-step copies;
- grouped-query attention folds the query heads of a group into the query-length dimension, so
  the shared keys are never repeated;
- RMSNorm, RoPE (through the model's own rotary module, so every RoPE scaling works) and the MLP
  follow transformers' formulas operation by operation, so greedy output matches the reference.

``supports(model)`` says which models qualify (LLaMA, Mistral without a sliding window, Qwen2
without one); anything else keeps the generic transformers path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_TYPES = frozenset({"llama", "mistral", "qwen2"})
CAPACITY_STEP = 256  # cache positions are allocated in steps of this many
SHRINK_ABOVE = 2048  # an empty batch keeps an allocation of up to this many positions


def supports(model: Any) -> bool:
    """Whether ``model`` can run on this path (else the generic one serves it)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED_TYPES:
        return False
    if getattr(config, "quantization_config", None) is not None:
        return False
    if getattr(model, "hf_device_map", None) and len(set(model.hf_device_map.values())) > 1:
        return False
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "mlp_bias", False):
        return False
    if getattr(config, "pretraining_tp", 1) != 1:
        return False
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        return False
    devices = {p.device for p in model.parameters()}
    dtypes = {p.dtype for p in model.parameters()}
    return (
        len(devices) == 1
        and len(dtypes) == 1
        and dtypes
        <= {
            torch.float32,
            torch.bfloat16,
            torch.float16,
        }
    )


def _fuse(linears: list[torch.nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several linears on the same input; the linears' parameters
    become views into it, so the model's memory does not grow."""
    weight = torch.cat([lin.weight.data for lin in linears])
    bias = None
    if linears[0].bias is not None:
        bias = torch.cat([lin.bias.data for lin in linears])
    start = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight.data = weight[start : start + n]
        if bias is not None:
            lin.bias.data = bias[start : start + n]
        start += n
    return weight, bias


PREPACKED_DTYPES = (torch.bfloat16, torch.float32)


def prepacks(dtype: Any, device: Any) -> bool:
    """Whether weights are handed to oneDNN prepacked: bfloat16 and float32 on a CPU.

    bf16: otherwise each product reorders the whole weight into oneDNN's layout first, which
    makes small-batch decoding 1.5-3x slower; the packed product gives bit-identical results.
    fp32: torch's own product (MKL's sgemm) is slow for the few rows of a decode step; on a
    2-core AVX2 EPYC the model's products took 26 ms packed against 36 ms at 1 row, 86 against
    171 at 16, 263 against 395 at 64 (``benchmarks``-style loop, one run). oneDNN's sums differ
    from MKL's in the last bits (about 1e-6 relative), as MKL's own do between batch sizes.
    """
    if not (
        dtype in PREPACKED_DTYPES
        and torch.device(device).type == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    ):
        return False
    # oneDNN's bf16 products need AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT; elsewhere packing
    # a bf16 weight raises, and torch's own (emulated) product is the only one.
    return dtype != torch.bfloat16 or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Linear:
    """``F.linear`` with a fixed weight, prepacked for oneDNN where that is faster."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, packed: bool) -> None:
        self.bias = bias
        self.packed = packed
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight) if packed else weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


@dataclass
class _Layer:
    qkv: Linear
    o_proj: Linear
    gate_up: Linear
    down: Linear
    norm_in: torch.Tensor
    norm_post: torch.Tensor


class RowCache:
    """Keys and values of up to ``rows`` sequences, each row at its own length.

    Rows and positions grow on demand (in steps, so growth is rare); ``lengths`` holds how many
    positions of each row are filled.
    """

    def __init__(
        self, layers: int, kv_heads: int, head_dim: int, dtype: Any, device: Any, max_rows: int = 0
    ) -> None:
        self.max_rows = max_rows  # rows are never allocated beyond this (0: no bound)
        self._shape = (kv_heads, head_dim)
        self._layers, self._dtype, self._device = layers, dtype, device
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.rows = 0
        self.capacity = 0
        self._alloc(0, 0)

    def _alloc(self, rows: int, capacity: int) -> None:
        kv, hd = self._shape
        fresh = [
            torch.zeros((rows, kv, capacity, hd), dtype=self._dtype, device=self._device)
            for _ in range(2 * self._layers)
        ]
        if self.keys:
            r, c = min(rows, self.keys[0].shape[0]), min(capacity, self.capacity)
            for new, old in zip(fresh, [*self.keys, *self.values], strict=True):
                new[:r, :, :c] = old[:r, :, :c]
        self.keys, self.values = fresh[: self._layers], fresh[self._layers :]
        self.capacity = capacity

    @property
    def bytes_per_position(self) -> int:
        kv, hd = self._shape
        return 2 * self._layers * kv * hd * torch.empty((), dtype=self._dtype).element_size()

    def planned(self, rows: int, length: int) -> tuple[int, int]:
        """The (rows, positions) allocated once ``reserve(rows, length)`` has run."""
        have_rows = self.keys[0].shape[0]
        new_rows = max(rows, 2 * have_rows, 8) if rows > have_rows else have_rows
        if self.max_rows:
            new_rows = max(rows, min(new_rows, self.max_rows))
        new_cap = self.capacity
        if length > self.capacity:
            new_cap = -(-max(length, self.capacity * 3 // 2) // CAPACITY_STEP) * CAPACITY_STEP
        return new_rows, new_cap

    def reserve(self, rows: int, length: int) -> None:
        """Make room for ``rows`` rows of ``length`` positions each."""
        if rows <= self.keys[0].shape[0] and length <= self.capacity:
            return
        self._alloc(*self.planned(rows, length))

    def copy_row(self, source: RowCache, src: int, dst: int, length: int) -> None:
        """Copy row ``src`` of ``source`` (this cache or another of the same model), its first
        ``length`` positions, into row ``dst``."""
        mine, theirs = (*self.keys, *self.values), (*source.keys, *source.values)
        for buf, other in zip(mine, theirs, strict=True):
            buf[dst, :, :length] = other[src, :, :length]

    def shrink(self) -> None:
        """The batch is empty: give back the memory a long sequence made it take (a short
        allocation is kept for the next requests)."""
        if self.capacity > SHRINK_ABOVE:
            self.keys, self.values, self.capacity = [], [], 0
            self._alloc(0, 0)


class LeanLlama:
    """The model's forward for prefill and decode, writing keys/values into a ``RowCache``."""

    def __init__(self, model: Any) -> None:
        config = model.config
        self.config = config
        self._model = model
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm.weight
        self.eps = config.rms_norm_eps
        self.rotary = inner.rotary_emb
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.group = self.heads // self.kv_heads
        self.scale = self.head_dim**-0.5
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self.packed = prepacks(self.dtype, self.device)
        head = model.lm_head
        self.lm_head = Linear(head.weight, getattr(head, "bias", None), self.packed)
        self.layers = [self._layer(layer) for layer in inner.layers]

    def _layer(self, layer: Any) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        qkv, qkv_bias = _fuse([attn.q_proj, attn.k_proj, attn.v_proj])
        gate_up, _ = _fuse([mlp.gate_proj, mlp.up_proj])
        packed = self.packed
        return _Layer(
            qkv=Linear(qkv, qkv_bias, packed),
            o_proj=Linear(attn.o_proj.weight, attn.o_proj.bias, packed),
            gate_up=Linear(gate_up, None, packed),
            down=Linear(mlp.down_proj.weight, None, packed),
            norm_in=layer.input_layernorm.weight,
            norm_post=layer.post_attention_layernorm.weight,
        )

    def new_cache(self, max_rows: int = 0) -> RowCache:
        return RowCache(
            len(self.layers), self.kv_heads, self.head_dim, self.dtype, self.device, max_rows
        )

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """transformers' LlamaRMSNorm: normalised in float32, then back. (``F.rms_norm`` is
        not fused on the CPU and costs more small operations than these.)"""
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """``x * cos + rotate_half(x) * sin`` with the sign of rotate_half folded into ``sin``
        (``signed_sin``): rolling by half a head is rotate_half without the negation."""
        return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin

    def _attend(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Attention of q [n, kv, g*t, hd] over keys/values [n, kv, total, hd].

        For one row, torch's fused CPU kernel is fastest; for many short query blocks its
        per-block overhead dominates, and two batched matrix products with a float32 softmax
        (transformers' eager attention) are about 3x faster in bfloat16.
        """
        if q.shape[0] == 1:
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
        scores = torch.matmul(q, keys.transpose(-1, -2)) * self.scale + mask
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(weights, values)

    def _mask(self, positions: torch.Tensor, total: int) -> torch.Tensor | None:
        """Which keys each query sees, [n, 1, group*t, total]: a query at position p sees its
        row's keys 0..p. None for one row decoding one token (it sees every key)."""
        n, t = positions.shape
        if n == 1 and t == 1:
            return None
        key_pos = torch.arange(total, device=self.device)
        visible = (key_pos[None, None, :] <= positions[:, :, None])[:, None, None]
        visible = visible.expand(n, 1, self.group, t, total).reshape(n, 1, self.group * t, total)
        if n == 1:
            return visible
        # An additive mask for the explicit attention of _attend.
        return torch.zeros(visible.shape, dtype=self.dtype, device=self.device).masked_fill(
            ~visible, float("-inf")
        )

    def _rotary(
        self, x: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin [n, t, 1, head_dim], from the model's own rotary module."""
        cos, sin = self.rotary(x, positions)
        half = sin.shape[-1] // 2
        signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        return cos[:, :, None], signed_sin[:, :, None]

    def forward(
        self,
        ids: torch.Tensor,
        cache: RowCache,
        rows: slice,
        starts: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run ``ids`` [n, t] for cache rows ``rows`` whose inputs start at positions ``starts``
        [n] (each row's filled length), write their keys/values, and return the float logits of
        the positions ``keep`` [n] (index into t; default the last) as [n, vocab].

        Rows padded on the right (shorter prompts in a group) are fine: a real position never
        attends to a later one, and the caller sets each row's length to its real end.
        """
        n, t = ids.shape
        positions = starts[:, None] + torch.arange(t, device=self.device)[None, :]  # [n, t]
        total = int(starts.max()) + t
        cache.reserve(rows.stop, total)
        x = F.embedding(ids, self.embed)
        cos, sin = self._rotary(x, positions)
        # Keys read per row: up to the longest row, where the products take a strided slice
        # (one row's fused kernel; float32's batched products); else the whole allocation,
        # which keeps each row's keys one contiguous block (bf16's batched products copy a
        # slice, which costs more than the masked positions). Measured on a 2-core EPYC, 64
        # rows of about 100 positions in an allocation of 256, fp32: 346 ms a step against 428.
        span = total if n == 1 or self.dtype == torch.float32 else cache.capacity
        mask = self._mask(positions, span)
        write_rows = torch.arange(rows.start, rows.stop, device=self.device)[:, None]
        heads, kv, g, hd = self.heads, self.kv_heads, self.group, self.head_dim
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(self._norm(x, layer.norm_in)).view(n, t, heads + 2 * kv, hd)
            qk = self._rope(qkv[:, :, : heads + kv], cos, sin)  # [n, t, heads + kv, hd]
            keys, values = cache.keys[i], cache.values[i]
            keys[write_rows, :, positions] = qk[:, :, heads:]
            values[write_rows, :, positions] = qkv[:, :, heads + kv :]
            # The group's query heads become query rows against their one shared kv head.
            q = qk[:, :, :heads].reshape(n, t, kv, g, hd).permute(0, 2, 3, 1, 4)
            out = self._attend(
                q.reshape(n, kv, g * t, hd),
                keys[rows, :, :span],
                values[rows, :, :span],
                mask,
            )
            out = out.view(n, kv, g, t, hd).permute(0, 3, 1, 2, 4).reshape(n, t, heads * hd)
            x = x + layer.o_proj(out)
            gate, up = layer.gate_up(self._norm(x, layer.norm_post)).chunk(2, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        last = x[:, -1] if keep is None else x[torch.arange(n, device=self.device), keep]
        return self.lm_head(self._norm(last, self.final_norm)).float()
