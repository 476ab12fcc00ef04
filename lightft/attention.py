"""Scaled dot-product attention, softmax(QKᵀ/√d_k)V, and multi-head self-attention, by hand.

Chapter: "The attention formula".
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MultiHeadSelfAttention", "causal_mask", "padding_mask", "scaled_dot_product_attention"]


def _check_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, bfloat16, float16), got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., seq_len, dim), got {tuple(x.shape)}")
    return x


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QKᵀ/√d_k)V.

    Args:
        q: queries, shape (..., L_q, d_k).
        k: keys, shape (..., L_k, d_k).
        v: values, shape (..., L_k, d_v).
        mask: optional boolean tensor broadcastable to (..., L_q, L_k); True where a query may attend
            to a key, False where it may not (padding, or the future in a causal model).

    Returns:
        output (..., L_q, d_v) and weights (..., L_q, L_k); each row of weights sums to 1.

    A query whose mask row is all False has nothing to attend to: that is an error here (it would
    be 0/0 = NaN), raised as ``ValueError``.
    """
    q, k, v = _check_tensor("q", q), _check_tensor("k", k), _check_tensor("v", v)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length L_k, got {k.shape[-2]} and {v.shape[-2]}")
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., L_q, L_k)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"mask must be a boolean tensor (True = may attend), got {got}")
        try:
            allowed = torch.broadcast_to(mask, scores.shape)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape {tuple(scores.shape)}"
            ) from None
        if not allowed.any(dim=-1).all():
            raise ValueError("mask has a query row with no key allowed; every query must attend to at least one key")
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """From a tokenizer's attention mask (batch, L) of 1 = token, 0 = padding, to a boolean mask of
    shape (batch, 1, 1, L) that broadcasts over heads and queries."""
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        raise ValueError("attention_mask must be a (batch, seq_len) tensor of 0/1")
    return attention_mask.bool()[:, None, None, :]


def causal_mask(length: int) -> torch.Tensor:
    """Boolean (L, L) lower-triangular mask: query i may attend to keys 0..i (GPT-style)."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    return torch.ones(length, length, dtype=torch.bool).tril()


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: h heads of size d/h, each softmax(QKᵀ/√d_k)V, concatenated and
    projected. ``forward(x, mask=None)`` maps (batch, L, d) to ((batch, L, d), weights (batch, h, L, L)).
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.query = nn.Linear(d_model, d_model, bias=bias)
        self.key = nn.Linear(d_model, d_model, bias=bias)
        self.value = nn.Linear(d_model, d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, h, L, d/h)
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, seq_len, {self.d_model}), got {shape}")
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        context, weights = scaled_dot_product_attention(q, k, v, mask)
        b, _, length, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(b, length, self.d_model)), weights

    @classmethod
    def from_bert_layer(cls, attention: nn.Module) -> "MultiHeadSelfAttention":
        """Copy the weights of one BERT attention block (``model.bert.encoder.layer[i].attention``):
        query/key/value and the output dense layer (not its LayerNorm or dropout)."""
        self_attn = getattr(attention, "self", None)
        output = getattr(attention, "output", None)
        if self_attn is None or output is None or not hasattr(self_attn, "query"):
            raise TypeError("expected a BERT attention block with .self.query/.key/.value and .output.dense")
        d_model = self_attn.query.in_features
        heads = getattr(self_attn, "num_attention_heads", None) or attention.self.config.num_attention_heads
        mha = cls(d_model, heads)
        with torch.no_grad():
            for mine, theirs in ((mha.query, self_attn.query), (mha.key, self_attn.key),
                                 (mha.value, self_attn.value), (mha.out, output.dense)):
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        return mha
