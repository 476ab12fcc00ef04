"""Scaled dot-product attention, softmax(QKᵀ/√d_k)V, and multi-head self-attention, by hand.

Chapter: "The attention formula" (``book/attention.md``).

* :func:`scaled_dot_product_attention` is the formula itself, written out step by step (it never
  calls PyTorch's fused kernel), returning the output *and* the attention weights.
* :func:`padding_mask` and :func:`causal_mask` build the two boolean masks the chapter draws.
  The convention everywhere in this module is PyTorch's: **True means "may attend"**, False means
  "blocked" (a padding token, or a future token in a causal model).
* :class:`MultiHeadSelfAttention` is a small multi-head self-attention layer built on the formula;
  :meth:`MultiHeadSelfAttention.from_bert_layer` loads the weights of a real BERT attention block.
* :func:`capture_attention` records what one layer of a real BERT-layout encoder computed (its input,
  attention output and attention weights), to check the hand-written version against it.
* :func:`scaling_statistics` and :func:`attention_cost` are the chapter's two measurements: why the
  scores are divided by √d_k, and how time and memory grow with the sequence length.
"""

from __future__ import annotations

import math
import statistics
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "AttentionCost",
    "CapturedAttention",
    "MultiHeadSelfAttention",
    "attention_cost",
    "capture_attention",
    "causal_mask",
    "padding_mask",
    "plot_attention",
    "scaled_dot_product_attention",
    "scaling_statistics",
]

_MASK_HELP = (
    "a boolean mask is expected (True = may attend, False = blocked); for a tokenizer's 0/1 "
    "attention_mask use lightft.padding_mask(attention_mask), for an additive float mask of 0/-inf "
    "use (mask == 0)"
)


# ----------------------------------------------------------------------------------------------------
# The formula
# ----------------------------------------------------------------------------------------------------


def _check_qkv(name: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., seq_len, dim), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float32, float64, bfloat16 or float16), got {x.dtype}; "
            f"convert it with {name}.float()"
        )
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., seq_len, dim), at least 2 dimensions; got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); attention needs finite inputs")
    return x


def _check_mask(mask: Any, scores_shape: torch.Size, device: torch.device) -> torch.Tensor:
    """The boolean mask broadcast to ``scores_shape`` (a view, no copy)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}; {_MASK_HELP}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask has dtype {mask.dtype}; {_MASK_HELP}")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but q, k and v are on {device}; move it with mask.to({str(device)!r})")
    try:
        allowed = torch.broadcast_to(mask, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape {tuple(scores_shape)} "
            "(..., L_q, L_k); accepted are e.g. (L_q, L_k), (batch, 1, 1, L_k) or (batch, heads, L_q, L_k)"
        ) from None
    # A query row with every key blocked would be softmax over all -inf = 0/0 = NaN. Checking the
    # un-broadcast mask is enough: broadcasting only repeats its rows.
    if mask.numel() and not mask.any(dim=-1).all():
        raise ValueError(
            "mask blocks every key for at least one query (a row of the mask is all False), so that query "
            "has nothing to attend to and its weights would be NaN; every query must be allowed at least one key"
        )
    return allowed


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Attention(Q, K, V) = softmax(QKᵀ / √d_k) V, computed step by step.

    Args:
        q: queries, shape ``(..., L_q, d_k)``.
        k: keys, shape ``(..., L_k, d_k)``.
        v: values, shape ``(..., L_k, d_v)``.
        mask: optional **boolean** tensor broadcastable to ``(..., L_q, L_k)``: ``True`` where query
            ``i`` may attend to key ``j``, ``False`` where it may not (a padding token, or a future token
            in a causal model). This is the convention of ``torch.nn.functional.scaled_dot_product_attention``.
            Blocked scores are set to -inf before the softmax, so their weights are exactly 0.

    Returns:
        ``(output, weights)``: ``output`` of shape ``(..., L_q, d_v)`` and the attention ``weights`` of
        shape ``(..., L_q, L_k)``; each row of ``weights`` is non-negative and sums to 1.

    The leading dimensions ``...`` (batch, heads) of q, k and v must be equal or broadcastable.

    Raises:
        TypeError: q, k or v is not a tensor, not floating point, or their dtypes differ; the mask is
            not a boolean tensor (a 0/1 or 0/-inf float mask is refused, to avoid reading it backwards).
        ValueError: fewer than 2 dimensions; q and k differ in ``d_k``; k and v differ in ``L_k``;
            tensors on different devices; NaN or inf in the inputs; a mask that does not broadcast to
            ``(..., L_q, L_k)``; or a mask row that blocks every key (that query's weights would be
            0/0 = NaN, so this is an error rather than a silent NaN).
    """
    q, k, v = _check_qkv("q", q), _check_qkv("k", k), _check_qkv("v", v)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share one dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got q {q.device}, k {k.device}, v {v.device}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k, got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions L_k (dimension -2), got k {tuple(k.shape)} "
            f"and v {tuple(v.shape)}"
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"the leading (batch, heads) dimensions of q {tuple(q.shape)}, k {tuple(k.shape)} and "
            f"v {tuple(v.shape)} do not broadcast"
        ) from None

    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., L_q, L_k): one score per query-key pair
    if mask is not None:
        allowed = _check_mask(mask, scores.shape, scores.device)
        scores = scores.masked_fill(~allowed, float("-inf"))  # blocked pairs: exp(-inf) = 0 weight
    weights = torch.softmax(scores, dim=-1)  # each row: non-negative, sums to 1
    return weights @ v, weights  # (..., L_q, d_v): a weighted average of the value vectors


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """From a tokenizer's ``attention_mask`` to the boolean mask :func:`scaled_dot_product_attention` takes.

    Args:
        attention_mask: shape ``(batch, L)``, 1 for a real token and 0 for padding (any integer,
            boolean or floating dtype holding only 0 and 1), as returned by a Hugging Face tokenizer.

    Returns:
        Boolean tensor of shape ``(batch, 1, 1, L)``, True at real tokens: it broadcasts over the heads
        and the queries, so every query may attend to every real key and to no padding key.
    """
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(
            f"attention_mask must be a torch.Tensor of shape (batch, seq_len) holding 0/1, got "
            f"{type(attention_mask).__name__}; tokenize with return_tensors='pt'"
        )
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape (batch, seq_len), got {tuple(attention_mask.shape)}")
    if attention_mask.dtype != torch.bool and not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token), as a tokenizer returns it")
    return attention_mask.bool()[:, None, None, :]


def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(length, length)`` lower-triangular mask: query ``i`` may attend to keys ``0..i`` only.

    This is the mask of a left-to-right (GPT-style) decoder; BERT-style encoders use no such mask, only
    :func:`padding_mask`.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


# ----------------------------------------------------------------------------------------------------
# Multi-head self-attention
# ----------------------------------------------------------------------------------------------------


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: ``num_heads`` heads of size ``d_model / num_heads``, each computing
    softmax(QKᵀ/√d_k)V on its own slice of the projected queries, keys and values; the heads' outputs
    are concatenated and mixed by the output projection.

    ``forward(x, mask=None)`` maps ``x`` of shape ``(batch, L, d_model)`` to ``(output, weights)`` with
    ``output`` of shape ``(batch, L, d_model)`` and ``weights`` of shape ``(batch, num_heads, L, L)``.
    ``mask`` is boolean and broadcastable to ``(batch, num_heads, L, L)`` (e.g. :func:`padding_mask`).
    There is no dropout: in eval mode this equals a BERT attention block without its residual and
    LayerNorm (see :meth:`from_bert_layer`).
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True):
        super().__init__()
        for name, value in (("d_model", d_model), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.query = nn.Linear(d_model, d_model, bias=bias)  # W_Q for all heads at once
        self.key = nn.Linear(d_model, d_model, bias=bias)  # W_K
        self.value = nn.Linear(d_model, d_model, bias=bias)  # W_V
        self.out = nn.Linear(d_model, d_model, bias=bias)  # W_O

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, h, L, d/h)
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, seq_len, {self.d_model}), got {shape}")
        q, k, v = self._split_heads(self.query(x)), self._split_heads(self.key(x)), self._split_heads(self.value(x))
        context, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, h, L, d/h), (B, h, L, L)
        b, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(b, length, self.d_model)  # concatenate the heads
        return self.out(context), weights

    @classmethod
    def from_bert_layer(cls, attention: nn.Module) -> "MultiHeadSelfAttention":
        """A copy of one BERT attention block's weights: query, key, value and the output dense layer.

        Args:
            attention: ``model.bert.encoder.layer[i].attention`` (a ``BertAttention``, with ``.self`` and
                ``.output``) or the whole ``model.bert.encoder.layer[i]`` (a ``BertLayer``).

        The output LayerNorm, the residual connection and dropout are not part of this module, so
        ``mha(x)[0]`` equals ``attention.output.dense(context)`` of the real block in eval mode.
        """
        if not isinstance(attention, nn.Module):
            raise TypeError(f"expected a BERT attention block (torch.nn.Module), got {type(attention).__name__}")
        if hasattr(attention, "attention") and not hasattr(attention, "self"):
            attention = attention.attention  # a whole BertLayer
        self_attn = getattr(attention, "self", None)
        output = getattr(attention, "output", None)
        if not all(hasattr(self_attn, name) for name in ("query", "key", "value")) or not hasattr(output, "dense"):
            raise TypeError(
                f"expected a BERT attention block with .self.query/.key/.value and .output.dense, such as "
                f"model.bert.encoder.layer[0].attention; got {type(attention).__name__}"
            )
        d_model = self_attn.query.in_features
        heads = getattr(self_attn, "num_attention_heads", None) or self_attn.config.num_attention_heads
        mha = cls(d_model, heads, bias=self_attn.query.bias is not None)
        mha = mha.to(device=self_attn.query.weight.device, dtype=self_attn.query.weight.dtype)
        with torch.no_grad():
            for mine, theirs in ((mha.query, self_attn.query), (mha.key, self_attn.key),
                                 (mha.value, self_attn.value), (mha.out, output.dense)):
                mine.weight.copy_(theirs.weight)
                if mine.bias is not None:
                    mine.bias.copy_(theirs.bias)
        return mha


# ----------------------------------------------------------------------------------------------------
# What a real layer computed
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedAttention:
    """What one attention block of a real encoder computed on a batch.

    ``hidden_states`` (batch, L, d): the block's input; ``output`` (batch, L, d): its output projection
    ``W_O`` applied to the concatenated heads (before dropout, residual and LayerNorm); ``weights``
    (batch, heads, L, L): the attention probabilities.
    """

    hidden_states: torch.Tensor
    output: torch.Tensor
    weights: torch.Tensor


def _bert_encoder(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        raise TypeError(
            f"expected a BERT-layout model (BertModel or BertForSequenceClassification, e.g. "
            f"lightft.load_model('minilm-l6')), got {type(model).__name__}"
        )
    return encoder


def capture_attention(model: nn.Module, batch: Mapping[str, torch.Tensor], layer: int = 0) -> CapturedAttention:
    """Run ``model`` on ``batch`` and record layer ``layer``'s attention input, output and weights.

    Args:
        model: a BERT-layout model loaded with ``attn_implementation="eager"`` (only the eager path
            returns attention weights), e.g. ``lightft.load_model("minilm-l6", num_labels=None,
            attn_implementation="eager")``.
        batch: the tokenizer's output (``input_ids``, ``attention_mask``, ...), tensors of shape (batch, L).
        layer: which encoder layer, 0-based.

    The model runs in eval mode under ``torch.no_grad()``; its train/eval mode is restored afterwards.
    """
    encoder = _bert_encoder(model)
    n_layers = len(encoder.layer)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be an integer in [0, {n_layers}), got {layer!r}")
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        raise ValueError(
            f"the model uses attn_implementation={model.config._attn_implementation!r}, which returns no "
            "attention weights; load it with attn_implementation='eager'"
        )
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise TypeError("batch must be a tokenizer's output: a mapping with 'input_ids' (and 'attention_mask')")
    block = encoder.layer[layer].attention
    seen: dict[str, torch.Tensor] = {}

    def keep_input(_module, args, kwargs):
        seen["hidden_states"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    def keep_output(_module, _args, out):
        seen["output"] = out.detach().clone()

    modes = {m: m.training for m in model.modules()}
    handles = [block.self.register_forward_pre_hook(keep_input, with_kwargs=True),
               block.output.dense.register_forward_hook(keep_output)]
    try:
        model.eval()
        with torch.no_grad():
            out = model(**batch, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return CapturedAttention(seen["hidden_states"], seen["output"], out.attentions[layer].detach())


# ----------------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def scaling_statistics(
    d_ks: Sequence[int], *, num_keys: int = 32, samples: int = 512, seed: int = 0
) -> list[dict[str, float]]:
    """Why the scores are divided by √d_k: statistics of QKᵀ and its softmax with and without scaling.

    For each ``d_k``, draws ``samples`` independent queries and ``samples × num_keys`` keys with
    independent standard normal entries (mean 0, variance 1), scores every query against its own
    ``num_keys`` keys, and reports for the raw scores q·k and the scaled scores q·k/√d_k:

    * ``std_raw``, ``std_scaled``: the standard deviation of the scores (theory: √d_k and 1);
    * ``max_weight_raw``, ``max_weight_scaled``: the mean of the largest softmax weight per query
      (1 means all attention on one key, ``1/num_keys`` means uniform);
    * ``entropy_raw``, ``entropy_scaled``: the mean entropy of the softmax weights, in nats (0 for
      a one-hot row, ``log(num_keys)`` for a uniform one, reported as ``entropy_uniform``);
    * ``jacobian_raw``, ``jacobian_scaled``: the mean Frobenius norm of the softmax's Jacobian
      ``diag(p) - p pᵀ`` with respect to the scores it receives: how much gradient flows back through
      the softmax (it tends to 0 as the softmax saturates into a one-hot row).

    Returns one dict per ``d_k``, in the order given (it also holds ``d_k`` and ``num_keys``).
    """
    if isinstance(d_ks, (str, bytes)) or not isinstance(d_ks, Sequence) or not d_ks:
        raise TypeError(f"d_ks must be a non-empty sequence of positive integers, got {d_ks!r}")
    for d in d_ks:
        _check_positive_int("every d_k", d)
    _check_positive_int("num_keys", num_keys)
    _check_positive_int("samples", samples)
    if num_keys < 2:
        raise ValueError("num_keys must be at least 2: a softmax over one key is always 1")
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for d_k in d_ks:
        q = torch.randn(samples, 1, d_k, generator=generator)
        k = torch.randn(samples, num_keys, d_k, generator=generator)
        raw = (q @ k.transpose(-2, -1)).squeeze(1)  # (samples, num_keys)
        row: dict[str, float] = {"d_k": d_k, "num_keys": num_keys, "entropy_uniform": math.log(num_keys)}
        for name, scores in (("raw", raw), ("scaled", raw / math.sqrt(d_k))):
            p = torch.softmax(scores, dim=-1)
            entropy = -(p * torch.log(p.clamp_min(1e-45))).sum(-1)
            row[f"std_{name}"] = scores.std().item()
            row[f"max_weight_{name}"] = p.max(-1).values.mean().item()
            row[f"entropy_{name}"] = entropy.mean().item()
            jacobian = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (samples, keys, keys)
            row[f"jacobian_{name}"] = torch.linalg.matrix_norm(jacobian).mean().item()
        rows.append(row)
    return rows


@dataclass(frozen=True)
class AttentionCost:
    """Time and memory of one attention call on ``(batch_size, num_heads, seq_len, d_head)`` inputs.

    ``weights_bytes``: the size of the ``(batch, heads, L, L)`` weight tensor, whether or not the
    implementation stores it. ``peak_bytes``: the measured peak of memory allocated during the call
    above what was allocated before it (on CUDA, ``torch.cuda.max_memory_allocated``; on CPU, the peak
    total size of the tensors the call's operators created and still held, which leaves out a fused
    kernel's internal scratch buffers). ``times_s``: wall-clock seconds of the timed calls.
    """

    implementation: str
    seq_len: int
    batch_size: int
    num_heads: int
    d_head: int
    dtype: str
    device: str
    threads: int
    times_s: tuple[float, ...]
    weights_bytes: int
    peak_bytes: int

    @property
    def median_ms(self) -> float:
        """Median time of one call, in milliseconds."""
        return 1000.0 * statistics.median(self.times_s)

    @property
    def min_ms(self) -> float:
        """Fastest call, in milliseconds: on a shared machine, the call least disturbed by other work."""
        return 1000.0 * min(self.times_s)

    def as_dict(self) -> dict[str, Any]:
        return {"implementation": self.implementation, "seq_len": self.seq_len, "batch_size": self.batch_size,
                "num_heads": self.num_heads, "d_head": self.d_head, "dtype": self.dtype, "device": self.device,
                "threads": self.threads, "median_ms": self.median_ms, "min_ms": self.min_ms, "weights_MiB": self.weights_bytes / 2**20,
                "peak_MiB": self.peak_bytes / 2**20}


class _PeakTensorBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Tracks the bytes of the storages that operators create while the mode is active: their running
    total (freed when the last tensor using a storage is garbage collected) and its peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}  # data_ptr -> [tensors alive, nbytes]

    def _release(self, ptr: int) -> None:
        entry = self._refs.get(ptr)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._refs[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or (ptr in inputs and ptr not in self._refs):
                continue  # empty, or a view of a tensor made before the measurement
            if ptr in self._refs:
                self._refs[ptr][0] += 1  # a view of a tensor made during the measurement
            else:
                self._refs[ptr] = [1, storage.nbytes()]
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._release, ptr)
        return out


def _torch_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


_IMPLEMENTATIONS = {
    "lightft": lambda q, k, v: scaled_dot_product_attention(q, k, v),  # by hand, stores the L x L weights
    "torch": _torch_sdpa,  # PyTorch's fused kernel (flash / memory-efficient where available)
}


def attention_cost(
    seq_lengths: Sequence[int],
    *,
    implementations: Sequence[str] = ("lightft", "torch"),
    batch_size: int = 1,
    num_heads: int = 12,
    d_head: int = 32,
    repeats: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    seed: int = 0,
) -> list[AttentionCost]:
    """Time and memory of self-attention as the sequence length grows.

    For each length ``L`` in ``seq_lengths``, random q, k, v of shape ``(batch_size, num_heads, L,
    d_head)`` go through each implementation: ``"lightft"`` (:func:`scaled_dot_product_attention`,
    which materialises the ``(batch, heads, L, L)`` weights) and ``"torch"``
    (``torch.nn.functional.scaled_dot_product_attention``, a fused kernel that need not store them).
    The implementations are interleaved in every repeat, so background load slows them alike.
    Defaults match one layer of MiniLM-L6 (12 heads of 32 dimensions). ``threads`` sets the CPU
    threads torch uses during the measurement (restored afterwards; default: leave it as it is). On a
    machine shared with other work, ``threads=1`` gives far steadier times: a multi-threaded operation
    waits for its slowest thread, and a thread that loses its core to another process stalls them all.

    Returns one :class:`AttentionCost` per (length, implementation), lengths in the order given.
    """
    if isinstance(seq_lengths, (str, bytes)) or not isinstance(seq_lengths, Sequence) or not seq_lengths:
        raise TypeError(f"seq_lengths must be a non-empty sequence of positive integers, got {seq_lengths!r}")
    for length in seq_lengths:
        _check_positive_int("every sequence length", length)
    if isinstance(implementations, str) or not implementations:
        raise TypeError(f"implementations must be a non-empty sequence of names from {sorted(_IMPLEMENTATIONS)}")
    for name in implementations:
        if name not in _IMPLEMENTATIONS:
            raise ValueError(f"unknown implementation {name!r}; accepted: {sorted(_IMPLEMENTATIONS)}")
    for name, value in (("batch_size", batch_size), ("num_heads", num_heads), ("d_head", d_head),
                        ("repeats", repeats)):
        _check_positive_int(name, value)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    if threads is not None:
        _check_positive_int("threads", threads)
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _attention_cost(seq_lengths, implementations, batch_size, num_heads, d_head, repeats, warmup,
                               device, dtype, seed)
    finally:
        torch.set_num_threads(previous_threads)


def _attention_cost(seq_lengths, implementations, batch_size, num_heads, d_head, repeats, warmup, device, dtype,
                    seed) -> list[AttentionCost]:
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    results = []
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for length in seq_lengths:
        shape = (batch_size, num_heads, length, d_head)
        q, k, v = (torch.randn(shape, generator=generator).to(device=device, dtype=dtype) for _ in range(3))
        weights_bytes = batch_size * num_heads * length * length * torch.empty((), dtype=dtype).element_size()
        peak: dict[str, int] = {}
        times: dict[str, list[float]] = {name: [] for name in implementations}
        with torch.inference_mode():
            for name in implementations:  # memory: one separate call each
                fn = _IMPLEMENTATIONS[name]
                if cuda:
                    sync()
                    torch.cuda.reset_peak_memory_stats(device)
                    before = torch.cuda.memory_allocated(device)
                    result = fn(q, k, v)
                    sync()
                    peak[name] = torch.cuda.max_memory_allocated(device) - before
                else:
                    with _PeakTensorBytes() as tracker:
                        result = fn(q, k, v)
                    peak[name] = tracker.peak
                del result
            for _ in range(warmup):
                for name in implementations:
                    _IMPLEMENTATIONS[name](q, k, v)
            for _ in range(repeats):
                for name in implementations:
                    sync()
                    start = time.perf_counter()
                    _IMPLEMENTATIONS[name](q, k, v)
                    sync()
                    times[name].append(time.perf_counter() - start)
        for name in implementations:
            results.append(AttentionCost(name, length, batch_size, num_heads, d_head, str(dtype).removeprefix("torch."),
                                         str(device), torch.get_num_threads(), tuple(times[name]),
                                         weights_bytes, peak[name]))
        del q, k, v
    return results


# ----------------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------------


def plot_attention(
    weights: Any,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    *,
    ax: Any = None,
    title: str | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
) -> Any:
    """Draw one ``(L_q, L_k)`` attention matrix (or a mask) as a heatmap: row ``i`` is query ``i``,
    column ``j`` is key ``j``. Labels (e.g. the tokens) become the tick labels. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu().numpy()
    matrix = np.asarray(weights, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"weights must be one (L_q, L_k) matrix, got shape {matrix.shape}; pick a batch and head first")
    if key_labels is None:
        key_labels = query_labels
    for name, labels, size in (("query_labels", query_labels, matrix.shape[0]), ("key_labels", key_labels, matrix.shape[1])):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{name} has {len(labels)} labels for {size} rows/columns")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=max(1e-12, float(matrix.max())))
    if query_labels is not None:
        ax.set_yticks(range(matrix.shape[0]), labels=list(query_labels))
    if key_labels is not None:
        ax.set_xticks(range(matrix.shape[1]), labels=list(key_labels), rotation=90)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax
