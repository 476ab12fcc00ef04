"""Inference latency: how long one forward pass of an encoder takes, measured fairly.

Chapter: "BERT and DistilBERT" (``book/bert.md``), where BERT-base, BERT-large, DistilBERT and
MiniLM-L6 are timed side by side.

Timing on a shared machine is noisy, so the two functions here follow three rules:

* warm-up passes first (the first call allocates memory and picks kernels), not timed;
* the **median** of several timed passes, which one slow outlier does not move;
* :func:`compare_latency` interleaves the models (model A, B, C, then A, B, C again, ...), so a burst
  of load from another process slows all of them alike and their *ratios* stay meaningful.

Inputs are random token ids with a full attention mask: the time of a forward pass depends on the
shapes, not on the words, so random weights and random tokens time a model exactly as well as
pretrained ones.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LatencyResult", "compare_latency", "encoder_forward_flops", "measure_latency", "random_batch"]


@dataclass(frozen=True)
class LatencyResult:
    """Wall-clock seconds of ``len(times_s)`` timed forward passes on one batch shape."""

    batch_size: int
    seq_len: int
    times_s: tuple[float, ...]
    threads: int

    @property
    def median_s(self) -> float:
        """The median time of one forward pass, in seconds."""
        return statistics.median(self.times_s)

    @property
    def ms_per_batch(self) -> float:
        """The median time of one forward pass, in milliseconds."""
        return 1000.0 * self.median_s

    @property
    def ms_per_example(self) -> float:
        """The median time divided by the batch size, in milliseconds."""
        return self.ms_per_batch / self.batch_size

    @property
    def examples_per_s(self) -> float:
        """Throughput implied by the median: examples per second."""
        return self.batch_size / self.median_s

    def as_dict(self) -> dict[str, float]:
        return {"batch_size": self.batch_size, "seq_len": self.seq_len, "repeats": len(self.times_s),
                "ms_per_batch": self.ms_per_batch, "ms_per_example": self.ms_per_example,
                "examples_per_s": self.examples_per_s, "min_ms": 1000.0 * min(self.times_s),
                "max_ms": 1000.0 * max(self.times_s)}


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def random_batch(model: nn.Module, batch_size: int, seq_len: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs for an encoder: ``input_ids`` and ``attention_mask``, both ``(batch_size, seq_len)``.

    Token ids are drawn from ``[1000, vocab_size)`` (ordinary word pieces in BERT's vocabulary, no
    special tokens) on the model's device; the mask is all ones (no padding).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"random_batch expects a torch.nn.Module, got {type(model).__name__}")
    _check_int("batch_size", batch_size, 1)
    _check_int("seq_len", seq_len, 1)
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None) or 30522
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and seq_len > limit:
        raise ValueError(f"seq_len {seq_len} exceeds the model's max_position_embeddings ({limit})")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    low = 1000 if vocab > 1000 else 0
    ids = torch.randint(low, vocab, (batch_size, seq_len), generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _forward_timer(model: nn.Module, batch: Mapping[str, torch.Tensor]):
    device = next(model.parameters()).device

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return once


def compare_latency(
    models: Mapping[str, nn.Module],
    batch_size: int = 1,
    seq_len: int = 128,
    *,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, LatencyResult]:
    """Time several models on the same batch shape, interleaved, and return each one's result.

    Args:
        models: name -> model (e.g. ``{"bert-base": build_encoder("bert-base"), ...}``); each takes
            ``input_ids`` and ``attention_mask`` of shape ``(batch_size, seq_len)``.
        batch_size, seq_len: the shape of the input batch.
        repeats: timed passes per model (the median is reported); ``warmup`` untimed passes come first.
        seed: seeds the random token ids (each model gets ids from its own vocabulary).

    Every model runs in eval mode under ``torch.inference_mode()`` (no autograd bookkeeping), with
    ``torch.get_num_threads()`` threads; the train/eval mode of every submodule is restored afterwards.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty mapping of name -> torch.nn.Module")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] is a {type(model).__name__}, not a torch.nn.Module")
        if next(model.parameters(), None) is None:
            raise ValueError(f"models[{name!r}] has no parameters; nothing to time")
    _check_int("repeats", repeats, 1)
    _check_int("warmup", warmup, 0)
    batches = {name: random_batch(model, batch_size, seq_len, seed=seed) for name, model in models.items()}
    timers = {name: _forward_timer(model, batches[name]) for name, model in models.items()}
    modes = {module: module.training for model in models.values() for module in model.modules()}
    times: dict[str, list[float]] = {name: [] for name in models}
    try:
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                for name in models:
                    timers[name]()
            for _ in range(repeats):
                for name in models:
                    times[name].append(timers[name]())
    finally:
        for module, mode in modes.items():  # every submodule back to its own mode
            module.training = mode
    threads = torch.get_num_threads()
    return {name: LatencyResult(batch_size, seq_len, tuple(times[name]), threads) for name in models}


def measure_latency(
    model: nn.Module,
    batch_size: int = 1,
    seq_len: int = 128,
    *,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> LatencyResult:
    """Median wall-clock time of one inference forward pass of ``model`` on a random batch.

    Runs ``warmup`` untimed passes, then ``repeats`` timed ones, on ``input_ids`` and
    ``attention_mask`` of shape ``(batch_size, seq_len)``, in eval mode under
    ``torch.inference_mode()``. ``result.ms_per_batch`` is the median in milliseconds. To compare
    models, prefer :func:`compare_latency`, which interleaves them.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"measure_latency expects a torch.nn.Module, got {type(model).__name__}")
    return compare_latency({"model": model}, batch_size, seq_len, repeats=repeats, warmup=warmup, seed=seed)["model"]


def encoder_forward_flops(config, batch_size: int, seq_len: int) -> int:
    """Floating-point operations of one forward pass through the encoder layers (matrix products only).

    With batch size $b$, sequence length $s$, $L$ layers, hidden size $h$ and FFN width $I$, each
    layer multiplies every token by the four attention matrices ($4h^2$ weights) and the two FFN
    matrices ($2hI$), at 2 FLOPs (multiply and add) per weight, and computes $QK^\\top$ and the
    weighted sum of values ($2 \\cdot 2 s h$ per token):

    $$ C = b\\,s\\,L\\,\\bigl(2\\,(4h^2 + 2hI) + 4\\,s\\,h\\bigr). $$

    Embedding look-ups, biases, LayerNorm, softmax, GELU and the pooler are left out (they are
    small next to the matrix products). Matches ``torch.utils.flop_counter.FlopCounterMode`` exactly
    on a ``BertModel`` without pooler and with eager attention.

    Args:
        config: a ``BertConfig`` or ``DistilBertConfig`` (or a model's ``.config``).
        batch_size, seq_len: the shape of the batch.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        _check_int(name, value, 1)
    fields = {}
    for name, fallback in (("num_hidden_layers", None), ("hidden_size", None), ("intermediate_size", "hidden_dim")):
        value = getattr(config, name, None)
        if value is None and fallback is not None:
            value = getattr(config, fallback, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"config.{name} must be a positive integer, got {value!r}; expected a BertConfig or "
                "DistilBertConfig (or a model's .config)"
            )
        fields[name] = value
    layers, h, ffn = fields["num_hidden_layers"], fields["hidden_size"], fields["intermediate_size"]
    b, s = batch_size, seq_len
    return b * s * layers * (2 * (4 * h * h + 2 * h * ffn) + 4 * s * h)
