"""Inference latency: how long one forward pass of an encoder takes, measured fairly.

Chapter: "BERT and DistilBERT". Untimed warm-up passes first, then the **median** of timed ones
(:func:`lightft.timing.time_calls`), models interleaved (A, B, A, B, ...) so that a burst of load slows
all alike and their *ratios* hold; random token ids and a full mask (the time depends on shapes only)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from lightft import checks, timing


@dataclass(frozen=True)
class LatencyResult:
    """Wall-clock seconds of ``len(times_s)`` timed forward passes on one ``(batch_size, seq_len)`` batch;
    ``median_s``, ``ms_per_batch``, ``ms_per_example`` and ``examples_per_s`` come from the median."""
    batch_size: int
    seq_len: int
    times_s: tuple[float, ...]
    threads: int

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def ms_per_batch(self) -> float:
        return 1000.0 * self.median_s

    @property
    def ms_per_example(self) -> float:
        return self.ms_per_batch / self.batch_size

    @property
    def examples_per_s(self) -> float:
        return self.batch_size / self.median_s


def random_batch(model: nn.Module, batch_size: int, seq_len: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random word-piece ``input_ids`` (ids >= 1000) and an all-ones ``attention_mask``, ``(batch_size, seq_len)``."""
    checks.instance("model", model, nn.Module, "a torch.nn.Module")
    checks.integer("batch_size", batch_size)
    checks.integer("seq_len", seq_len)
    config = getattr(model, "config", None)
    vocab, limit = getattr(config, "vocab_size", None) or 30522, getattr(config, "max_position_embeddings", None)
    if limit is not None and seq_len > limit:
        raise ValueError(f"seq_len {seq_len} exceeds the model's max_position_embeddings ({limit})")
    ids = torch.randint(1000 if vocab > 1000 else 0, vocab, (batch_size, seq_len), generator=torch.Generator()
                        .manual_seed(seed)).to(next(model.parameters(), torch.empty(0)).device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def compare_latency(models: Mapping[str, nn.Module], batch_size: int = 1, seq_len: int = 128, *,
                    repeats: int = 5, warmup: int = 1, seed: int = 0) -> dict[str, LatencyResult]:
    """Time several models (name -> model) on one random batch shape, interleaved: each round calls every
    model once, ``warmup`` untimed rounds then ``repeats`` timed ones, in eval mode under
    ``torch.inference_mode()``; every submodule's train/eval mode is restored afterwards."""
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty mapping of name -> torch.nn.Module")  # random_batch checks each
    checks.integer("repeats", repeats)
    checks.integer("warmup", warmup, 0)
    batches = {name: random_batch(model, batch_size, seq_len, seed=seed) for name, model in models.items()}
    calls = {name: (lambda m=model, b=batches[name]: m(**b)) for name, model in models.items()}
    modes = {module: module.training for model in models.values() for module in model.modules()}
    times = {name: [] for name in models}
    try:
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            for _ in range(warmup + repeats):  # round by round, each model once per round
                for name, call in calls.items():
                    times[name] += timing.time_calls(call, repeats=1, warmup=0)
    finally:
        for module, mode in modes.items():
            module.training = mode
    return {name: LatencyResult(batch_size, seq_len, tuple(t[warmup:]), torch.get_num_threads())
            for name, t in times.items()}


def measure_latency(model: nn.Module, batch_size: int = 1, seq_len: int = 128, *, repeats: int = 5,
                    warmup: int = 1, seed: int = 0) -> LatencyResult:
    """The median time of one inference pass on a random batch; to compare models, use :func:`compare_latency`."""
    return compare_latency({"model": model}, batch_size, seq_len, repeats=repeats, warmup=warmup, seed=seed)["model"]


def encoder_forward_flops(config, batch_size: int, seq_len: int) -> int:
    """FLOPs of one forward pass through the encoder layers of ``config`` (a BERT or DistilBERT config).

    With batch $b$, length $s$, $L$ layers, hidden size $h$, FFN width $I$: each layer multiplies every
    token by four attention matrices ($4h^2$ weights) and two FFN matrices ($2hI$), 2 FLOPs per weight,
    and computes $QK^\\top$ and the weighted values ($4 s h$ per token):
    $C = b\\,s\\,L\\,\\bigl(2\\,(4h^2 + 2hI) + 4\\,s\\,h\\bigr)$. Embeddings, biases, LayerNorm, softmax and GELU
    are left out: ``FlopCounterMode`` counts the same on a ``BertModel`` (no pooler, eager attention)."""
    b, s = checks.integer("batch_size", batch_size), checks.integer("seq_len", seq_len)
    fields = {name: getattr(config, name, None) for name in ("num_hidden_layers", "hidden_size", "intermediate_size")}
    fields["intermediate_size"] = fields["intermediate_size"] or getattr(config, "hidden_dim", None)  # DistilBERT
    layers, h, ffn = (checks.integer(f"config.{name}", value) for name, value in fields.items())
    return b * s * layers * (2 * (4 * h * h + 2 * h * ffn) + 4 * s * h)
