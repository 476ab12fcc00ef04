"""Scaled dot-product attention, softmax(QKᵀ/√d_k)V, and multi-head self-attention, by hand.

Chapter: "The attention formula" (``book/attention.md``). :func:`scaled_dot_product_attention` is the formula written
out step by step (never PyTorch's fused kernel), returning the output *and* the weights; :func:`padding_mask` and
:func:`causal_mask` are the chapter's two boolean masks (PyTorch's convention: **True means "may attend"**);
:class:`MultiHeadSelfAttention` is built on the formula and loads a real BERT block
(:meth:`~MultiHeadSelfAttention.from_bert_layer`); :func:`capture_attention` records what a real layer computed;
:func:`scaling_statistics` (why divide by √d_k) and :func:`attention_cost` (time and memory against the length) are
the chapter's measurements."""

from __future__ import annotations

import math
import statistics
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark.utils.common import set_torch_threads

from lightft import checks, timing


# ---------- the formula ----------------------------------------------------------------------------
def _check_qkv(q: Any, k: Any, v: Any) -> None:
    """q (..., L_q, d_k), k (..., L_k, d_k), v (..., L_k, d_v): finite floating tensors that fit together."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        checks.instance(name, x, torch.Tensor, "a torch.Tensor of shape (..., seq_len, dim)")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}; convert it with {name}.float()")
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., seq_len, dim), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains non-finite values (NaN or inf); attention needs finite inputs")
    if not q.dtype == k.dtype == v.dtype:  # (a device mismatch: torch's own error is clear)
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    shapes = f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension d_k; {shapes}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of positions L_k (dimension -2); {shapes}")
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading (batch, heads) dimensions do not broadcast; {shapes}") from None


def _check_mask(mask: Any, scores: torch.Tensor) -> torch.Tensor:
    """The boolean mask broadcast to the shape of ``scores`` (..., L_q, L_k): a view, no copy."""
    checks.instance("mask", mask, torch.Tensor, "a torch.Tensor (boolean, True = may attend) or None")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask has dtype {mask.dtype}, but a boolean mask is expected (True = may attend); for a "
                        "tokenizer's 0/1 attention_mask use lightft.padding_mask, for a 0/-inf mask use (mask == 0)")
    try:
        allowed = torch.broadcast_to(mask, scores.shape)
    except RuntimeError:
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to the scores' {tuple(scores.shape)}") from None
    # A row with every key blocked would be softmax over all -inf = 0/0 = NaN. Checking the
    # un-broadcast mask is enough: broadcasting only repeats its rows.
    if mask.numel() and not mask.any(dim=-1).all():
        raise ValueError("mask blocks every key for some query (an all-False row): its weights would be NaN")
    return allowed


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(QKᵀ / √d_k) V, computed step by step.

    ``q`` (..., L_q, d_k), ``k`` (..., L_k, d_k), ``v`` (..., L_k, d_v); the leading (batch, heads) dimensions must
    broadcast. ``mask``: optional **boolean**, broadcastable to (..., L_q, L_k), True where query i may attend to key
    j (blocked weights are exactly 0). A float mask (0/1 or 0/-inf: easy to read backwards) and a row blocking every
    key (weights 0/0 = NaN) are errors. Returns ``(output, weights)``: (..., L_q, d_v) and (..., L_q, L_k), each
    weight row summing to 1."""
    _check_qkv(q, k, v)
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., L_q, L_k): one score per query-key pair
    if mask is not None:
        allowed = _check_mask(mask, scores)
        scores = scores.masked_fill(~allowed, float("-inf"))  # blocked pairs: exp(-inf) = 0 weight
    weights = torch.softmax(scores, dim=-1)  # each row: non-negative, sums to 1
    return weights @ v, weights  # (..., L_q, d_v): a weighted average of the value vectors


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """A tokenizer's 0/1 ``attention_mask`` (batch, L) -> boolean (batch, 1, 1, L), True at real tokens:
    it broadcasts over heads and queries, so every query may attend to every real key, no padding key."""
    checks.instance("attention_mask", attention_mask, torch.Tensor,
                    "a torch.Tensor (batch, seq_len) of 0/1 (tokenize with return_tensors='pt')")
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape (batch, seq_len), got {tuple(attention_mask.shape)}")
    if attention_mask.dtype != torch.bool and not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token), as a tokenizer returns it")
    return attention_mask.bool()[:, None, None, :]


def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (length, length) lower-triangular mask: query i may attend to keys 0..i only (a GPT-style
    decoder; BERT-style encoders use only :func:`padding_mask`)."""
    checks.integer("length", length)
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


# ---------- multi-head self-attention --------------------------------------------------------------
class MultiHeadSelfAttention(nn.Module):
    """``num_heads`` heads of size d_model / num_heads, each computing softmax(QKᵀ/√d_k)V on its slice
    of the projected queries, keys and values; the heads are concatenated and mixed by ``out`` (W_O).
    ``forward(x, mask=None)``: x (batch, L, d_model) -> ``(output, weights)``, (batch, L, d_model) and
    (batch, num_heads, L, L); ``mask`` boolean, broadcastable to (batch, num_heads, L, L). No dropout:
    in eval mode this is a BERT attention block without its residual and LayerNorm."""

    def __init__(self, d_model: int, num_heads: int, bias: bool = True):
        super().__init__()
        checks.integer("d_model", d_model)
        checks.integer("num_heads", num_heads)
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.query = nn.Linear(d_model, d_model, bias=bias)  # W_Q for all heads at once
        self.key = nn.Linear(d_model, d_model, bias=bias)  # W_K
        self.value = nn.Linear(d_model, d_model, bias=bias)  # W_V
        self.out = nn.Linear(d_model, d_model, bias=bias)  # W_O

    def _check_input(self, name: str, x: Any) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape (batch, seq_len, {self.d_model}), got {shape}")

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, h, L, d/h)
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input("x", x)
        q, k, v = self._split_heads(self.query(x)), self._split_heads(self.key(x)), self._split_heads(self.value(x))
        context, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, h, L, d/h), (B, h, L, L)
        b, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(b, length, self.d_model)  # concatenate the heads
        return self.out(context), weights

    @classmethod
    def from_bert_layer(cls, attention: nn.Module) -> "MultiHeadSelfAttention":
        """A copy of the query, key, value and output dense weights of ``model.bert.encoder.layer[i].attention``
        (or of the whole layer): ``mha(x)[0]`` equals the block's ``output.dense(context)`` in eval mode."""
        if hasattr(attention, "attention") and not hasattr(attention, "self"):
            attention = attention.attention  # a whole BertLayer
        attn, output = getattr(attention, "self", None), getattr(attention, "output", None)
        if not all(hasattr(attn, name) for name in ("query", "key", "value")) or not hasattr(output, "dense"):
            raise TypeError(f"expected a BERT attention block (layer[i].attention), got {type(attention).__name__}")
        heads = getattr(attn, "num_attention_heads", None) or attn.config.num_attention_heads
        mha = cls(attn.query.in_features, heads, bias=attn.query.bias is not None)
        mha = mha.to(device=attn.query.weight.device, dtype=attn.query.weight.dtype)
        theirs = {"query": attn.query, "key": attn.key, "value": attn.value, "out": output.dense}
        mha.load_state_dict({f"{name}.{p}": t for name, layer in theirs.items() for p, t in layer.state_dict().items()})
        return mha


# ---------- what a real layer computed -------------------------------------------------------------
@dataclass(frozen=True)
class CapturedAttention:
    """What one attention block of a real encoder computed on a batch: ``hidden_states`` (batch, L, d),
    its input; ``output`` (batch, L, d), W_O applied to the concatenated heads (before dropout, residual
    and LayerNorm); ``weights`` (batch, heads, L, L), the attention probabilities."""
    hidden_states: torch.Tensor
    output: torch.Tensor
    weights: torch.Tensor


def capture_attention(model: nn.Module, batch: Mapping[str, torch.Tensor], layer: int = 0) -> CapturedAttention:
    """Run ``model`` on ``batch`` (a tokenizer's output) and record layer ``layer``'s attention input,
    output and weights, in eval mode under ``torch.no_grad()`` (the model's modes are restored after).
    ``model``: BERT layout, loaded with ``attn_implementation="eager"`` (only eager returns weights)."""
    encoder = getattr(getattr(model, "base_model", model), "encoder", None)
    if not hasattr(encoder, "layer"):
        raise TypeError(f"expected a BERT-layout model (lightft.load_model('minilm-l6')), got {type(model).__name__}")
    if checks.integer("layer", layer, -len(encoder.layer)) >= len(encoder.layer):
        raise ValueError(f"layer must be an integer below {len(encoder.layer)}, got {layer!r}")
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        raise ValueError(f"{model.config._attn_implementation!r} attention returns no weights; load it with 'eager'")
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise TypeError("batch must be a tokenizer's output: a mapping with 'input_ids' (and 'attention_mask')")
    block, seen = encoder.layer[layer].attention, {}
    modes = {m: m.training for m in model.modules()}
    handles = [block.self.register_forward_pre_hook(lambda _m, args, kwargs: seen.update(
                   hidden_states=(args[0] if args else kwargs["hidden_states"]).detach().clone()), with_kwargs=True),
               block.output.dense.register_forward_hook(lambda _m, _a, out: seen.update(output=out.detach().clone()))]
    try:
        with torch.no_grad():
            out = model.eval()(**batch, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return CapturedAttention(seen["hidden_states"], seen["output"], out.attentions[layer].detach())


# ---------- measurements ---------------------------------------------------------------------------
def _positive_integers(name: str, values: Any) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise TypeError(f"{name} must be a non-empty list of positive integers, got {values!r}")
    return [checks.integer(f"each of {name}", value) for value in values]


def scaling_statistics(d_ks: Sequence[int], *, num_keys: int = 32, samples: int = 512,
                       seed: int = 0) -> list[dict[str, float]]:
    """Why the scores are divided by √d_k: one dict per ``d_k`` (in order) of statistics of QKᵀ.

    ``samples`` standard normal queries, each scored against ``num_keys`` standard normal keys; for the raw q·k
    (``*_raw``) and the scaled q·k/√d_k (``*_scaled``): ``std_*`` (theory: √d_k and 1); ``max_weight_*``, the mean
    largest softmax weight (1: one-hot, 1/num_keys: uniform); ``entropy_*`` in nats (``entropy_uniform`` = log
    num_keys); ``jacobian_*``, the mean Frobenius norm of the softmax's Jacobian diag(p) - ppᵀ: the gradient that
    flows back (0 once the softmax saturates)."""
    d_ks = _positive_integers("d_ks", d_ks)
    checks.integer("num_keys", num_keys, 2)  # a softmax over one key is always 1
    checks.integer("samples", samples)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for d_k in d_ks:
        q = torch.randn(samples, 1, d_k, generator=generator)
        k = torch.randn(samples, num_keys, d_k, generator=generator)
        raw = (q @ k.transpose(-2, -1)).squeeze(1)  # (samples, num_keys)
        row: dict[str, float] = {"d_k": d_k, "num_keys": num_keys, "entropy_uniform": math.log(num_keys)}
        for name, scores in (("raw", raw), ("scaled", raw / math.sqrt(d_k))):
            p = torch.softmax(scores, dim=-1)
            jacobian = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (samples, keys, keys)
            row[f"std_{name}"] = scores.std().item()
            row[f"max_weight_{name}"] = p.max(-1).values.mean().item()
            row[f"entropy_{name}"] = -(p * torch.log(p.clamp_min(1e-45))).sum(-1).mean().item()
            row[f"jacobian_{name}"] = torch.linalg.matrix_norm(jacobian).mean().item()
        rows.append(row)
    return rows


@dataclass(frozen=True)
class AttentionCost:
    """Time and memory of one attention call on (batch_size, num_heads, seq_len, d_head) inputs:
    ``weights_bytes``, the size of the (batch, heads, L, L) weights, stored or not; ``peak_bytes``, the
    call's peak above the level before it (see :func:`attention_cost`); ``times_s``, seconds per call."""
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
        return 1000.0 * statistics.median(self.times_s)

    @property
    def min_ms(self) -> float:
        """The fastest call: on a shared machine, the one least disturbed by other work."""
        return 1000.0 * min(self.times_s)

    def as_dict(self) -> dict[str, Any]:
        """One table row: the settings, ``median_ms``, ``min_ms``, ``weights_MiB`` and ``peak_MiB``."""
        row = {k: v for k, v in asdict(self).items() if k not in ("times_s", "weights_bytes", "peak_bytes")}
        return row | {"median_ms": self.median_ms, "min_ms": self.min_ms,
                      "weights_MiB": self.weights_bytes / 2**20, "peak_MiB": self.peak_bytes / 2**20}


class _PeakTensorBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Peak bytes (``.increase``) of the tensor storages that operators create while the mode is active:
    the CPU probe of :func:`attention_cost`. It counts tensors, not the process: the RSS that
    :class:`lightft.timing.PeakMemory` samples cannot see kilobytes of weights among hundreds of MiB of
    Python and libraries, nor a peak shorter than its sampling interval. A storage counts while a tensor
    made in the mode holds it; a fused kernel's internal scratch buffers are not seen."""

    def __init__(self) -> None:
        super().__init__()
        self.increase, self._made = 0, []  # weak references to the tensors made in the mode

    def _alive(self) -> dict[int, int]:  # data_ptr -> bytes of each storage that a tensor made here holds
        storages = (t.untyped_storage() for t in (ref() for ref in self._made) if t is not None)
        return {s.data_ptr(): s.nbytes() for s in storages}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        given = {t.untyped_storage().data_ptr() for t in inputs} - self._alive().keys()  # made before the mode
        self._made += [weakref.ref(t) for t in torch.utils._pytree.tree_leaves(out)
                       if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in given]
        self.increase = max(self.increase, sum(self._alive().values()))
        return out


_IMPLEMENTATIONS = {
    "lightft": lambda q, k, v: scaled_dot_product_attention(q, k, v),  # by hand, stores the L x L weights
    "torch": torch.nn.functional.scaled_dot_product_attention,  # fused (flash / memory-efficient) kernel
}


def attention_cost(seq_lengths: Sequence[int], *, implementations: Sequence[str] = ("lightft", "torch"),
                   batch_size: int = 1, num_heads: int = 12, d_head: int = 32, repeats: int = 3, warmup: int = 1,
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                   threads: int | None = None, seed: int = 0) -> list[AttentionCost]:
    """Time and memory of self-attention as the sequence length grows: one :class:`AttentionCost` per
    (length, implementation), lengths in the order given.

    For each length L, random q, k, v (batch_size, num_heads, L, d_head) go through ``"lightft"``
    (:func:`scaled_dot_product_attention`, which stores the (batch, heads, L, L) weights) and ``"torch"`` (PyTorch's
    fused kernel, which need not). Times: :func:`lightft.timing.time_calls`, the implementations interleaved in every
    repeat so background load slows them alike. Peak memory: :class:`lightft.timing.PeakMemory` on CUDA, the tensors'
    bytes on a CPU (``_PeakTensorBytes``). Defaults: one MiniLM-L6 layer. ``threads``: torch's CPU threads meanwhile
    (None: as they are); ``threads=1`` is far steadier on a shared machine (an operation waits for its slowest
    thread)."""
    seq_lengths = _positive_integers("seq_lengths", seq_lengths)
    for name in implementations:
        checks.choice("implementation", name, _IMPLEMENTATIONS)
    for name, value in (("batch_size", batch_size), ("num_heads", num_heads), ("d_head", d_head), ("repeats", repeats)):
        checks.integer(name, value)
    checks.integer("warmup", warmup, 0)
    checks.choice("dtype", dtype, (torch.float32, torch.float64, torch.bfloat16, torch.float16))
    with set_torch_threads(torch.get_num_threads() if threads is None else checks.integer("threads", threads)):
        return [cost for length in seq_lengths for cost in _attention_cost(
            tuple(implementations), (batch_size, num_heads, length, d_head), repeats, warmup,
            torch.device(device), dtype, seed)]


def _attention_cost(implementations, shape, repeats, warmup, device, dtype, seed) -> list[AttentionCost]:
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(shape, generator=generator).to(device=device, dtype=dtype) for _ in range(3))
    calls = {name: (lambda f=_IMPLEMENTATIONS[name]: f(q, k, v)) for name in implementations}
    peaks, times = {}, {name: [] for name in implementations}
    with torch.inference_mode():
        for name, call in calls.items():  # memory: one separate call each
            probe = timing.PeakMemory(device) if device.type == "cuda" else _PeakTensorBytes()
            with probe:
                call()
            peaks[name] = probe.increase
        for call in [*calls.values()] * warmup:  # round by round, like the timed calls
            call()
        for _ in range(repeats):
            for name, call in calls.items():
                times[name] += timing.time_calls(call, repeats=1, warmup=0, device=device)
    batch, heads, length, d_head = shape
    return [AttentionCost(name, length, batch, heads, d_head, str(dtype).removeprefix("torch."), str(device),
                          torch.get_num_threads(), tuple(times[name]), batch * heads * length**2 * q.element_size(),
                          peaks[name]) for name in implementations]


# ---------- pictures -------------------------------------------------------------------------------
def plot_attention(weights: Any, query_labels: Sequence[str] | None = None,
                   key_labels: Sequence[str] | None = None, *, ax: Any = None, title: str | None = None,
                   cmap: str = "viridis", colorbar: bool = True) -> Any:
    """Draw one (L_q, L_k) attention matrix (or a mask) as a heatmap, row i = query i, column j = key j;
    the labels (e.g. tokens; ``key_labels`` defaults to ``query_labels``) become the ticks. Returns the Axes."""
    import matplotlib.pyplot as plt
    import numpy as np
    matrix = np.asarray(weights.detach().float().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"weights must be one (L_q, L_k) matrix, got shape {matrix.shape}; pick a batch and head first")
    key_labels = query_labels if key_labels is None else key_labels  # (matplotlib refuses a wrong count of labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=max(1e-12, float(matrix.max())))
    if query_labels is not None:
        ax.set_yticks(range(matrix.shape[0]), labels=list(query_labels))
    if key_labels is not None:
        ax.set_xticks(range(matrix.shape[1]), labels=list(key_labels), rotation=90)
    ax.set(xlabel="key", ylabel="query", title=title or "")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax
