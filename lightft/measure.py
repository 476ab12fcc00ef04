"""Measuring a training or inference configuration: throughput, peak memory, FLOP/s and MFU.

Chapter: "Lightweight strategies, measured": the hardware's ceiling (:func:`peak_matmul_flops`), batches
of real text, short warmed-up loops (:func:`measure_training`, :func:`measure_inference`; times and
memory from :mod:`lightft.timing`), FLOPs and MFU, and a fine-tune at a fixed budget."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from lightft import checks, timing
from lightft.train import finetune

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
Batches = Sequence[Mapping[str, torch.Tensor]]


@dataclass
class Throughput:
    """What one measured loop gave (seconds, bytes; ``dataclasses.asdict`` for a table row): ``tokens_per_s``
    counts real tokens (mask 1), ``padded_tokens_per_s`` every computed position."""
    mode: str
    precision: str
    steps: int
    examples: int
    seconds: float
    examples_per_s: float
    tokens_per_s: float
    padded_tokens_per_s: float
    peak_memory_bytes: int
    memory_increase_bytes: int
    flops_per_s: float | None = None
    mfu: float | None = None


def _device(where: nn.Module | torch.device, precision: str) -> torch.device:
    """The device (a model's), after checking that ``precision`` can run there."""
    device = where if isinstance(where, torch.device) else next(where.parameters(), torch.empty(0)).device
    checks.choice("precision", precision, _DTYPES)
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' is a GPU technique (it needs loss scaling); on a CPU use 'bf16' or 'fp32'")
    return device


def _autocast(precision: str, device: torch.device):
    return contextlib.nullcontext() if precision == "fp32" else torch.autocast(device.type, dtype=_DTYPES[precision])


def peak_matmul_flops(precision: str = "fp32", *, size: int = 1024, repeats: int = 5,
                      device: str | torch.device | None = None) -> float:
    """The best FLOP/s of a ``(size, size) @ (size, size)`` product in ``precision`` (``2 size^3`` FLOPs): the
    *best* of ``repeats`` timed runs (after a warm-up), not the median, a ceiling, the peak that
    :func:`model_flops_utilisation` divides by."""
    checks.integer("size", size, 16)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _device(device, precision)
    a, b = torch.randn(2, size, size, generator=torch.Generator().manual_seed(0)).to(device, _DTYPES[precision])
    inner = 1 if device.type == "cpu" else 20  # one GPU product is too quick to time alone
    return 2 * size**3 * inner / min(timing.time_calls(lambda: [a @ b for _ in range(inner)], repeats=repeats,
                                                       device=device))


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters that multiply every token: all but the embedding tables (look-ups cost no FLOPs), that is
    ``model.num_parameters(exclude_embeddings=True)``: the head, pooler and LayerNorms are counted."""
    if not callable(getattr(model, "num_parameters", None)):
        raise TypeError(f"model must be a transformers or peft model, got {type(model).__name__}")
    return model.num_parameters(exclude_embeddings=True)


def training_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N + 12 L s h``.

    ``N`` is :func:`non_embedding_parameters` (2 FLOPs per weight forward, 4 backward); :math:`QK^T` and
    the weighted sum of values cost ``4 s h`` per token per layer forward, ``12 s h`` with the backward
    (``L`` layers, length ``s``, hidden size ``h``). Softmax, LayerNorm and GELU are left out."""
    checks.integer("seq_len", seq_len)
    config = getattr(model, "config", None)
    layers, hidden = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    if not layers or not hidden:
        raise ValueError("the model's config needs num_hidden_layers and hidden_size (a BERT-like encoder)")
    return 6 * non_embedding_parameters(model) + 12 * layers * seq_len * hidden


def model_flops_utilisation(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """MFU: the model's useful FLOP/s (``tokens_per_s * flops_per_token``) as a fraction of ``peak_flops``."""
    return tokens_per_s * flops_per_token / checks.number("peak_flops", peak_flops, 0)


def text_batches(tokenizer, texts: Sequence[str], labels: Sequence[int] | None = None, *, batch_size: int = 16,
                 max_length: int = 128, padding: str = "dynamic", group_by_length: bool = False,
                 truncation_side: str = "right", seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Tokenize ``texts`` into batches, each a dict of ``(batch, seq_len)`` tensors (``labels``: ``(batch,)``).

    ``padding="max_length"`` pads every batch to ``max_length`` (the usual recipe), ``"dynamic"`` to its
    longest text (``DataCollatorWithPadding``). ``group_by_length`` sorts by length, then shuffles the
    batches with ``seed`` (a few timed steps see a fair sample of lengths; the Trainer's sampler puts the
    longest first). ``truncation_side="left"`` keeps the tail of a long text instead of its head."""
    from transformers import DataCollatorWithPadding
    checks.choice("padding", padding, ("dynamic", "max_length"))
    checks.choice("truncation_side", truncation_side, ("right", "left"))
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    texts = checks.texts("texts", texts)
    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"labels has {len(labels)} entries but texts has {len(texts)}")
    checks.integer("batch_size", batch_size)
    checks.integer("max_length", max_length, 2)
    side, tokenizer.truncation_side = tokenizer.truncation_side, truncation_side
    try:
        encoded = tokenizer(texts, truncation=True, max_length=max_length, return_token_type_ids=False)
    finally:
        tokenizer.truncation_side = side
    features = [{"input_ids": ids, "attention_mask": mask, **({} if labels is None else {"labels": int(labels[i])})}
                for i, (ids, mask) in enumerate(zip(encoded["input_ids"], encoded["attention_mask"]))]
    order = sorted(range(len(texts)), key=lambda i: len(features[i]["input_ids"])) if group_by_length \
        else range(len(texts))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=torch.Generator().manual_seed(seed))]
    collate = DataCollatorWithPadding(tokenizer, padding="longest" if padding == "dynamic" else "max_length",
                                      max_length=max_length, return_tensors="pt")
    return [dict(collate([features[i] for i in chunk])) for chunk in chunks]


def _check(model: nn.Module, batches: Batches, need_labels: bool) -> None:
    checks.instance("model", model, nn.Module, "a torch.nn.Module")
    if not isinstance(batches, Sequence) or not batches or not all(
            isinstance(b, Mapping) and "input_ids" in b for b in batches):
        raise TypeError("batches must be a non-empty list of dicts with input_ids (see text_batches)")
    if need_labels and not all("labels" in b for b in batches):
        raise ValueError("training batches need labels (pass labels= to text_batches)")


def _timed_loop(model: nn.Module, batches: Batches, work: Callable[[Callable[[], dict]], None], *, mode: str,
                precision: str, steps: int, warmup: int, peak_flops: float | None = None) -> Throughput:
    """Time ``steps`` calls of ``work(next_batch)`` after ``warmup``; ``next_batch()`` cycles through
    ``batches`` and counts examples, real tokens, computed positions and (with ``peak_flops``) FLOPs."""
    device, position, counts = _device(model, precision), itertools.count(), []

    def next_batch() -> dict[str, torch.Tensor]:
        batch = {k: v.to(device) for k, v in batches[next(position) % len(batches)].items()}
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        real = int(mask.sum()) if mask is not None else ids.numel()
        flops = training_flops_per_token(model, ids.shape[1]) * real if peak_flops else 0.0
        counts.append((ids.shape[0], real, ids.numel(), flops))
        return batch

    was_training = model.training
    model.train(mode == "train")
    try:
        with timing.PeakMemory(device) as memory:
            seconds = sum(timing.time_calls(lambda: work(next_batch), repeats=steps, warmup=warmup, device=device))
    finally:
        model.train(was_training)
    timed = counts[len(counts) * warmup // (warmup + steps):]  # every call takes as many batches
    examples, real, padded, flops = (sum(column) for column in zip(*timed))
    flops_per_s = flops / seconds if peak_flops else None
    return Throughput(mode, precision, steps, examples, seconds, examples / seconds, real / seconds,
                      padded / seconds, int(memory.peak), int(memory.increase), flops_per_s,
                      flops_per_s / peak_flops if peak_flops else None)


def measure_training(model: nn.Module, batches: Batches, *, precision: str = "fp32",
                     steps: int = 3, warmup: int = 1, accumulation_steps: int = 1, learning_rate: float = 5e-5,
                     peak_flops: float | None = None, restore: bool = True) -> Throughput:
    """Time ``steps`` optimizer steps (after ``warmup`` untimed ones) of ``model`` on ``batches``.

    A step: ``accumulation_steps`` forward/backward passes (one batch each, cycling through ``batches``
    from :func:`text_batches`; ``"bf16"``/``"fp16"`` autocast them), then AdamW. ``peak_flops`` (same
    precision) adds FLOP/s and MFU over real tokens. ``restore`` puts the weights back afterwards."""
    _check(model, batches, need_labels=True)
    checks.integer("steps", steps)
    checks.integer("accumulation_steps", accumulation_steps)
    device = _device(model, precision)
    if not (trainable := [p for p in model.parameters() if p.requires_grad]):
        raise ValueError("the model has no trainable parameters; nothing to train")
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()} if restore else None
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # disabled: a pass-through

    def step(next_batch: Callable[[], dict]) -> None:
        for _ in range(accumulation_steps):
            with _autocast(precision, device):
                loss = model(**next_batch()).loss / accumulation_steps
            scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    try:
        return _timed_loop(model, batches, step, mode="train", precision=precision, steps=steps, warmup=warmup,
                           peak_flops=peak_flops)
    finally:
        if saved is not None:
            model.load_state_dict(saved)


def measure_inference(model: nn.Module, batches: Batches, *, precision: str = "fp32",
                      steps: int | None = None, warmup: int = 1) -> Throughput:
    """Time forward passes of ``model`` (eval mode, ``torch.inference_mode``) over ``batches``: ``steps``
    batches (default: each once) after ``warmup``; ``labels`` ignored; int8 models too."""
    _check(model, batches, need_labels=False)
    steps = len(batches) if steps is None else checks.integer("steps", steps)
    device = _device(model, precision)

    def forward(next_batch: Callable[[], dict]) -> None:
        with torch.inference_mode(), _autocast(precision, device):
            model(**{k: v for k, v in next_batch().items() if k != "labels"})

    return _timed_loop(model, batches, forward, mode="inference", precision=precision, steps=steps, warmup=warmup)


def measure_accuracy(model: nn.Module | str = "minilm-l6", data: Any = "rotten_tomatoes", *, train_limit: int = 500,
                     eval_limit: int | None = 500, **finetune_kwargs) -> dict[str, Any]:
    """Fine-tune at a fixed budget with :func:`lightft.finetune`; return the test metrics and timings. Keys:
    ``accuracy``, ``f1``, ``train_seconds``, ``examples_per_s``, ``tokens_per_s``, ``peak_memory_bytes``,
    ``precision``, ``steps``, ``epochs``, ``model``, ``predictions`` (the test examples' classes, for paired tests).
    Checkpoints go to a temporary folder, then away."""
    finetune_kwargs.setdefault("quiet", True)
    with tempfile.TemporaryDirectory(prefix="lightft-measure-", ignore_cleanup_errors=True) as scratch:
        r = finetune(model, data, train_limit=train_limit, eval_limit=eval_limit, output_dir=f"{scratch}/run",
                     **finetune_kwargs)
    same = ("train_seconds", "peak_memory_bytes", "precision", "steps", "epochs", "model")
    return {"accuracy": r.metrics["accuracy"], "f1": r.metrics.get("f1"), "examples_per_s": r.examples_per_second,
            "tokens_per_s": r.tokens_per_second, "predictions": r.test_predictions, **{k: getattr(r, k) for k in same}}


def batch_accuracy(model: nn.Module, batches: Batches, *, precision: str = "fp32") -> tuple[float, torch.Tensor]:
    """``(accuracy, predictions)`` on labelled ``batches``, predictions ``(examples,)`` in batch order
    (eval mode, no gradients; fp32, bf16 autocast and int8 models alike)."""
    _check(model, batches, need_labels=True)
    device, was_training = _device(model, precision), model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(precision, device):
            predicted = torch.cat([model(**{k: v.to(device) for k, v in b.items() if k != "labels"})
                                   .logits.argmax(-1).cpu() for b in batches])
    finally:
        model.train(was_training)
    return float((predicted == torch.cat([b["labels"] for b in batches])).float().mean()), predicted
