"""Measuring a training or inference configuration: throughput, peak memory, FLOP/s and MFU.

Chapter: "Lightweight strategies, measured". Every number in that chapter comes from these functions.

* :func:`peak_matmul_flops` times a large matrix product: the hardware's practical ceiling, fp32 and bf16.
* :func:`text_batches` tokenizes real texts into batches (padded to ``max_length`` or dynamically,
  optionally grouped by length).
* :func:`measure_training` runs a short, warmed-up loop of optimizer steps (forward, backward, AdamW)
  and :func:`measure_inference` a loop of forward passes; both return a :class:`Throughput` with
  examples/s, tokens/s (real, non-padding tokens), peak memory and, for training, model FLOPs
  utilisation (MFU) against a peak measured in the same run.
* :func:`training_flops_per_token` is the FLOP count behind MFU: ``6 x`` non-embedding parameters per
  token (2 forward + 4 backward per weight) plus the attention scores, ``12 x layers x seq_len x hidden``.
* :func:`measure_accuracy` fine-tunes with :func:`lightft.finetune` at a fixed budget (the "when asked"
  accuracy).

Peak memory is the process's resident set size (RSS) sampled by a background thread on a CPU (so it
includes the Python process, the libraries and the weights: report differences between settings), and
``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "Throughput",
    "batch_accuracy",
    "measure_accuracy",
    "measure_inference",
    "measure_training",
    "model_flops_utilisation",
    "non_embedding_parameters",
    "peak_matmul_flops",
    "text_batches",
    "training_flops_per_token",
]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Throughput:
    """What one measured loop gave. Times in seconds, memory in bytes.

    ``tokens_per_s`` counts real tokens (attention mask 1); ``padded_tokens_per_s`` counts every
    position the model computed, padding included. ``mfu`` is the model FLOPs utilisation (training
    only; ``None`` when no peak was given).
    """

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' is a GPU technique (it needs loss scaling); on a CPU use 'bf16' or 'fp32'")
    return precision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_flops(precision: str = "fp32", *, size: int = 1024, repeats: int = 5,
                      device: str | torch.device | None = None) -> float:
    """The best FLOP/s of a ``(size, size) @ (size, size)`` matrix product in ``precision``.

    One product costs ``2 * size**3`` FLOPs (a multiply and an add per term). The best of ``repeats``
    timed runs (after one warm-up) is returned: the practical ceiling that :func:`model_flops_utilisation`
    divides by. Uses ``torch.get_num_threads()`` threads on a CPU.
    """
    _check_int("size", size, 16)
    _check_int("repeats", repeats, 1)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _check_precision(precision, device)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=_DTYPES[precision])
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=_DTYPES[precision])
    inner = 1 if device.type == "cpu" else 20
    best = math.inf
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        _sync(device)
        elapsed = (time.perf_counter() - start) / inner
        if i:  # the first run is the warm-up
            best = min(best, elapsed)
    return 2 * size**3 / best


def _config(model_or_config: Any):
    return getattr(model_or_config, "config", model_or_config)


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters that multiply every token: all but the embedding tables (word, position, type).

    Embedding look-ups cost no FLOPs; the classification head and pooler are counted (they are tiny).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"non_embedding_parameters expects a torch.nn.Module, got {type(model).__name__}")
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def training_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N + 12 L s h``.

    ``N`` is :func:`non_embedding_parameters` (each weight costs 2 FLOPs in the forward pass and 4 in
    the backward pass); the attention scores :math:`QK^T` and the weighted sum of values cost
    ``4 s h`` per token per layer forward, three times that with the backward pass (``L`` layers,
    sequence length ``s``, hidden size ``h``). Dropout, softmax, LayerNorm and GELU are left out.
    """
    _check_int("seq_len", seq_len, 1)
    config = _config(model)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    if not layers or not hidden:
        raise ValueError("the model's config needs num_hidden_layers and hidden_size (a BERT-like encoder)")
    return 6 * non_embedding_parameters(model) + 12 * layers * seq_len * hidden


def model_flops_utilisation(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """MFU: the model's useful FLOP/s (``tokens_per_s * flops_per_token``) as a fraction of ``peak_flops``."""
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops!r}")
    return tokens_per_s * flops_per_token / peak_flops


def text_batches(tokenizer, texts: Sequence[str], labels: Sequence[int] | None = None, *, batch_size: int = 16,
                 max_length: int = 128, padding: str = "dynamic", group_by_length: bool = False,
                 truncation_side: str = "right", seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Tokenize ``texts`` into a list of batches, each a dict of ``(batch, seq_len)`` tensors.

    Args:
        padding: ``"max_length"`` pads every batch to ``max_length`` (the usual recipe);
            ``"dynamic"`` pads each batch to its own longest text.
        group_by_length: sort texts into length buckets before batching (batches of similar
            lengths, so dynamic padding wastes less); batches are then shuffled with ``seed``.
        truncation_side: ``"right"`` keeps the head of a long text, ``"left"`` keeps its tail.
        labels: added to each batch as ``labels`` (shape ``(batch,)``) when given.
    """
    if padding not in ("dynamic", "max_length"):
        raise ValueError(f"padding must be 'dynamic' or 'max_length'; got {padding!r}")
    if truncation_side not in ("right", "left"):
        raise ValueError(f"truncation_side must be 'right' (keep the head) or 'left' (keep the tail); got {truncation_side!r}")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or not texts:
        raise TypeError("texts must be a non-empty list of strings")
    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"labels has {len(labels)} entries but texts has {len(texts)}")
    _check_int("batch_size", batch_size)
    _check_int("max_length", max_length, 2)
    texts = list(texts)
    side = tokenizer.truncation_side
    tokenizer.truncation_side = truncation_side
    try:
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    finally:
        tokenizer.truncation_side = side
    order = list(range(len(texts)))
    if group_by_length:
        order.sort(key=lambda i: len(ids[i]))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        generator = torch.Generator().manual_seed(seed)
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
    pad_id = tokenizer.pad_token_id or 0
    batches = []
    for chunk in chunks:
        width = max_length if padding == "max_length" else max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
            mask[row, :len(ids[i])] = 1
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if labels is not None:
            batch["labels"] = torch.tensor([int(labels[i]) for i in chunk])
        batches.append(batch)
    return batches


class _PeakMemory:
    """Peak memory during a ``with`` block: RSS sampled every ``interval`` s on a CPU, CUDA stats on a GPU."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval = device, interval
        self.peak = self.start = 0
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        with contextlib.suppress(OSError, AttributeError):  # give freed heap pages back (glibc)
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        process = psutil.Process()
        self.start = self.peak = process.memory_info().rss

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, process.memory_info().rss)
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return False
        self._stop.set()
        self._thread.join()
        import psutil

        self.peak = max(self.peak, psutil.Process().memory_info().rss)
        return False


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def _check_batches(batches: Sequence[Mapping[str, torch.Tensor]], need_labels: bool) -> None:
    if not isinstance(batches, Sequence) or not batches:
        raise TypeError("batches must be a non-empty list of dicts of tensors (see text_batches)")
    for batch in batches:
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise TypeError("each batch must be a dict with at least input_ids (and attention_mask)")
        if need_labels and "labels" not in batch:
            raise ValueError("training batches need labels (pass labels= to text_batches)")


def _cycle(batches: Sequence, n: int) -> Iterator:
    for i in range(n):
        yield batches[i % len(batches)]


def _counts(batch: Mapping[str, torch.Tensor]) -> tuple[int, int, int]:
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    real = int(mask.sum()) if mask is not None else ids.numel()
    return ids.shape[0], real, ids.numel()


def measure_training(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]], *, precision: str = "fp32",
                     steps: int = 3, warmup: int = 1, accumulation_steps: int = 1, learning_rate: float = 5e-5,
                     peak_flops: float | None = None, restore: bool = True) -> Throughput:
    """Time ``steps`` optimizer steps (after ``warmup`` untimed ones) of ``model`` on ``batches``.

    Each optimizer step runs ``accumulation_steps`` forward/backward passes (one per batch, taken from
    ``batches`` in turn, cycling) and one AdamW update; under ``precision`` ``"bf16"``/``"fp16"`` the
    forward pass runs in ``torch.autocast``. Batches are dicts of ``(batch, seq_len)`` tensors with
    ``labels`` of shape ``(batch,)``, e.g. from :func:`text_batches`. ``peak_flops`` (from
    :func:`peak_matmul_flops`, same precision) adds FLOP/s and MFU to the result; both count real
    tokens only (work spent on padding is not useful work). With ``restore`` the
    weights are put back afterwards, so one model can be measured in several settings.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"measure_training expects a torch.nn.Module, got {type(model).__name__}")
    _check_batches(batches, need_labels=True)
    _check_int("steps", steps)
    _check_int("warmup", warmup, 0)
    _check_int("accumulation_steps", accumulation_steps)
    device = next(model.parameters()).device
    _check_precision(precision, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters; nothing to train")
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()} if restore else None
    was_training = model.training
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    stream = _cycle(batches, (steps + warmup) * accumulation_steps)
    examples = real = padded = 0
    flops = 0.0
    model.train()
    try:
        def step(count: bool) -> None:
            nonlocal examples, real, padded, flops
            for _ in range(accumulation_steps):
                batch = {k: v.to(device) for k, v in next(stream).items()}
                with _autocast(precision, device):
                    loss = model(**batch).loss / accumulation_steps
                (scaler.scale(loss) if scaler else loss).backward()
                if count:
                    n, r, p = _counts(batch)
                    examples, real, padded = examples + n, real + r, padded + p
                    flops += training_flops_per_token(model, batch["input_ids"].shape[1]) * r if peak_flops else 0
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        with _PeakMemory(device) as memory:
            for _ in range(warmup):
                step(False)
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(True)
            _sync(device)
            seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
        if saved is not None:
            with torch.no_grad():
                model.load_state_dict(saved)
        del optimizer
    flops_per_s = flops / seconds if peak_flops else None
    return Throughput(
        mode="train", precision=precision, steps=steps, examples=examples, seconds=seconds,
        examples_per_s=examples / seconds, tokens_per_s=real / seconds, padded_tokens_per_s=padded / seconds,
        peak_memory_bytes=int(memory.peak), memory_increase_bytes=int(memory.peak - memory.start),
        flops_per_s=flops_per_s, mfu=flops_per_s / peak_flops if peak_flops else None,
    )


def measure_inference(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]], *, precision: str = "fp32",
                      steps: int | None = None, warmup: int = 1) -> Throughput:
    """Time forward passes of ``model`` (eval mode, ``torch.inference_mode``) over ``batches``.

    ``steps`` batches are timed (default: each batch once) after ``warmup`` untimed ones; ``labels``
    in a batch are ignored. Works for any module that takes ``input_ids`` and ``attention_mask``,
    including int8 dynamically quantized models.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"measure_inference expects a torch.nn.Module, got {type(model).__name__}")
    _check_batches(batches, need_labels=False)
    steps = len(batches) if steps is None else _check_int("steps", steps)
    _check_int("warmup", warmup, 0)
    device = next(model.parameters(), torch.empty(0)).device
    _check_precision(precision, device)
    was_training = model.training
    model.eval()
    examples = real = padded = 0
    try:
        with _PeakMemory(device) as memory, torch.inference_mode(), _autocast(precision, device):
            for batch in _cycle(batches, warmup):
                model(**{k: v.to(device) for k, v in batch.items() if k != "labels"})
            _sync(device)
            start = time.perf_counter()
            for batch in _cycle(batches, steps):
                model(**{k: v.to(device) for k, v in batch.items() if k != "labels"})
                n, r, p = _counts(batch)
                examples, real, padded = examples + n, real + r, padded + p
            _sync(device)
            seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
    return Throughput(
        mode="inference", precision=precision, steps=steps, examples=examples, seconds=seconds,
        examples_per_s=examples / seconds, tokens_per_s=real / seconds, padded_tokens_per_s=padded / seconds,
        peak_memory_bytes=int(memory.peak), memory_increase_bytes=int(memory.peak - memory.start),
    )


def measure_accuracy(model: nn.Module | str = "minilm-l6", data: Any = "rotten_tomatoes", *, train_limit: int = 500,
                     eval_limit: int | None = 500, **finetune_kwargs) -> dict[str, Any]:
    """Fine-tune at a fixed budget with :func:`lightft.finetune` and return the test metrics and timings.

    Returns a dict with ``accuracy``, ``f1``, ``train_seconds``, ``examples_per_s``, ``tokens_per_s``,
    ``peak_memory_bytes``, ``precision`` and ``steps``; ``finetune_kwargs`` go to ``finetune``
    (``max_length``, ``padding``, ``precision``, ``epochs``, ``learning_rate``, ...). Checkpoints go to a
    temporary folder that is deleted afterwards.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from lightft.train import finetune

    finetune_kwargs.setdefault("quiet", True)
    scratch = Path(tempfile.mkdtemp(prefix="lightft-measure-"))
    try:
        result = finetune(model, data, train_limit=train_limit, eval_limit=eval_limit,
                          output_dir=scratch / "run", **finetune_kwargs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"accuracy": result.metrics["accuracy"], "f1": result.metrics.get("f1"),
            "train_seconds": result.train_seconds, "examples_per_s": result.examples_per_second,
            "tokens_per_s": result.tokens_per_second, "peak_memory_bytes": result.peak_memory_bytes,
            "precision": result.precision, "steps": result.steps, "epochs": result.epochs,
            "model": result.model}


def batch_accuracy(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]], *,
                   precision: str = "fp32") -> tuple[float, torch.Tensor]:
    """Accuracy of ``model`` on labelled ``batches`` (eval mode, no gradients) and its predictions.

    Returns ``(accuracy, predictions)`` with ``predictions`` of shape ``(examples,)``, in batch order.
    Works for fp32, bf16 autocast and int8 (dynamically quantized) models alike.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"batch_accuracy expects a torch.nn.Module, got {type(model).__name__}")
    _check_batches(batches, need_labels=True)
    device = next(model.parameters(), torch.empty(0)).device
    _check_precision(precision, device)
    was_training = model.training
    model.eval()
    predictions, labels = [], []
    try:
        with torch.inference_mode(), _autocast(precision, device):
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
                predictions.append(model(**inputs).logits.argmax(-1).cpu())
                labels.append(batch["labels"])
    finally:
        model.train(was_training)
    predicted, truth = torch.cat(predictions), torch.cat(labels)
    return float((predicted == truth).float().mean()), predicted
