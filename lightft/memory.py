"""What a model costs in memory: weights, gradients, optimizer state and activations.

Chapter: "Background and core concepts" (``book/background.md``). Three tools, cheapest first:
:func:`footprint` counts the *static* memory from the parameters alone (weights; for training also
gradients, optimizer state and, in mixed precision, fp32 master weights); :func:`bert_activation_estimate`
predicts a BERT classifier's *activation* memory with a formula derived layer by layer;
:func:`activation_bytes` *measures* it, adding up the tensors autograd saves for the backward pass.

Bytes per parameter during training, for a parameter that is trained (frozen ones cost only their
weights), in the accounting of Rajbhandari et al. (2020, ZeRO):

=====================================  =======  =========  ======  =========  =====
setting                                weights  gradients  master  optimizer  total
=====================================  =======  =========  ======  =========  =====
fp32, AdamW                               4         4         0         8        16
fp16/bf16 mixed precision, AdamW          2         2         4         8        16
pure bf16 (no master copy), AdamW         2         2         0         4         8
fp32, SGD with momentum                   4         4         0         4        12
=====================================  =======  =========  ======  =========  =====

PyTorch keeps a parameter's gradient and optimizer state in its dtype (AdamW allocates ``exp_avg`` and ``exp_avg_sq``
with ``torch.zeros_like(param)``). ``mixed_precision=True`` is the classic recipe of Micikevicius et al. (2018):
16-bit weights and gradients plus an fp32 *master* copy and fp32 optimizer state; ``torch.autocast`` reaches the same
16 bytes with fp32 weights, gradients and moments (4 + 4 + 8), casting on the fly. The optimizer's per-tensor ``step``
counter is ignored."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lightft import checks

#: Accepted dtype names (lower case) -> torch dtype.
_DTYPE_NAMES: dict[str, torch.dtype] = {
    **dict.fromkeys(("float64", "fp64", "double"), torch.float64), "int8": torch.int8,
    **dict.fromkeys(("float32", "fp32", "float"), torch.float32), "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    **dict.fromkeys(("float16", "fp16", "half"), torch.float16)}

#: Optimizer name -> number of state tensors it keeps per parameter, each the size of the parameter: the
#: first and second moment for Adam(W) (exp_avg, exp_avg_sq), one momentum buffer, nothing for plain SGD.
OPTIMIZER_STATES: dict[str, int] = {"adamw": 2, "adam": 2, "sgd_momentum": 1, "sgd": 0}


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    checks.instance("dtype", dtype, (str, torch.dtype), "a string such as 'float32' or a torch.dtype")
    if isinstance(dtype, torch.dtype):
        return checks.choice("dtype", dtype, dict.fromkeys(_DTYPE_NAMES.values()))
    return _DTYPE_NAMES[checks.choice("dtype", dtype.strip().lower().removeprefix("torch."), _DTYPE_NAMES)]


def bytes_per_element(dtype: str | torch.dtype) -> int:
    """Bytes one number takes in ``dtype``: 8 for float64, 4 for float32, 2 for float16/bfloat16, 1 for int8.
    Accepts ``torch.float32`` etc. or the names ``"float32"``/``"fp32"``, ``"float16"``/``"fp16"``,
    ``"bfloat16"``/``"bf16"``, ``"int8"``, ``"float64"``/``"fp64"``."""
    return _dtype(dtype).itemsize


def format_bytes(n: int | float) -> str:
    """A byte count for humans, in binary units: ``format_bytes(3 * 2**20) == '3.0 MiB'``."""
    n = checks.number("a number of bytes", n, low=0, inclusive=True)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclasses.dataclass(frozen=True)
class MemoryFootprint:
    """The static memory of a model in bytes (:func:`footprint`); ``total`` is ``weights + gradients +
    master_weights + optimizer_state``, activations excluded (see :func:`activation_bytes`)."""
    parameters: int
    trainable_parameters: int
    dtype: str
    training: bool
    optimizer: str | None
    mixed_precision: bool
    weights: int
    gradients: int
    master_weights: int
    optimizer_state: int

    @property
    def total(self) -> int:
        """All bytes counted: weights, gradients, master weights and optimizer state."""
        return self.weights + self.gradients + self.master_weights + self.optimizer_state

    @property
    def bytes_per_parameter(self) -> float:
        """``total`` divided by the number of parameters (all of them, trainable or not)."""
        return self.total / self.parameters if self.parameters else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The fields and ``total`` as a plain dict (for a table: ``pandas.DataFrame([fp.as_dict()])``)."""
        return {**dataclasses.asdict(self), "total": self.total}

    def __str__(self) -> str:
        mode = "inference" if not self.training else (
            f"training with {self.optimizer or 'no optimizer'}{', mixed precision' if self.mixed_precision else ''}")
        parts = [("weights", self.weights)] + [("gradients", self.gradients), ("master weights", self.master_weights),
                                               ("optimizer state", self.optimizer_state)] * self.training
        lines = [f"  {part:<17}{format_bytes(n):>11}" for part, n in parts + [("total", self.total)]]
        head = f"{self.parameters:,} parameters ({self.trainable_parameters:,} trainable), {self.dtype}, {mode}"
        return "\n".join([head, *lines]) + f"  ({self.bytes_per_parameter:.1f} bytes per parameter)"


def footprint(model: nn.Module, dtype: str | torch.dtype = "float32", *, training: bool = False,
              optimizer: str | None = "adamw", trainable_only: bool = True,
              mixed_precision: bool = False) -> MemoryFootprint:
    """The memory a model's parameters take, for inference or for training, in bytes.

    Only ``model``'s parameters are read, counted in ``dtype`` (a name that :func:`bytes_per_element` lists, or a
    torch dtype) whatever their own dtype and device. ``training=False`` counts the weights only; ``True`` adds, for
    every trained parameter, a gradient and the ``optimizer`` state: ``"adamw"``/``"adam"`` (two moments),
    ``"sgd_momentum"`` (one buffer), ``"sgd"`` or ``None`` (none). ``trainable_only=True`` trains only the parameters
    with ``requires_grad``, as PyTorch does; ``False`` treats every parameter as trained (full fine-tuning, whatever
    the flags say). ``mixed_precision``: a 16-bit ``dtype`` plus an fp32 master copy and fp32 optimizer state (16
    bytes with AdamW)."""
    checks.instance("model", model, nn.Module, "a torch.nn.Module")
    weight_dtype = _dtype(dtype)
    for flag, value in (("training", training), ("trainable_only", trainable_only),
                        ("mixed_precision", mixed_precision)):
        checks.instance(flag, value, bool, "True or False")
    if optimizer is not None:
        optimizer = checks.instance("optimizer", optimizer, str, "a string or None").strip().lower().replace("-", "_")
    checks.choice("optimizer", optimizer, (*OPTIMIZER_STATES, None))
    name = str(weight_dtype).removeprefix("torch.")
    if mixed_precision and weight_dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"mixed_precision=True needs a 16-bit dtype ('float16' or 'bfloat16'), got {name}")
    n_all = sum(p.numel() for p in model.parameters())  # a tied tensor is yielded once
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if training and n_trained and not weight_dtype.is_floating_point:
        raise ValueError(f"{name} weights cannot be trained (no gradients); freeze them, or use a float dtype")
    element, fp32, trained = weight_dtype.itemsize, torch.float32.itemsize, n_trained if training else 0
    state_element = fp32 if mixed_precision else element  # mixed precision keeps fp32 optimizer state
    return MemoryFootprint(
        parameters=n_all, trainable_parameters=n_trained, dtype=name, training=training,
        optimizer=optimizer if training else None, mixed_precision=mixed_precision, weights=n_all * element,
        gradients=trained * element, master_weights=trained * fp32 if mixed_precision else 0,
        optimizer_state=trained * OPTIMIZER_STATES.get(optimizer, 0) * state_element)


def activation_bytes(model: nn.Module, batch: Mapping[str, torch.Tensor] | torch.Tensor, *, train: bool = True) -> int:
    """Measure the activation memory of one forward pass: bytes that autograd keeps for the backward.

    Runs ``model(**batch)`` (``model(batch)`` for a tensor) once under
    ``torch.autograd.graph.saved_tensors_hooks`` and adds up every tensor saved for the backward pass;
    tensors sharing memory (views, one tensor saved twice) count once, with the size of the block they
    keep alive. Parameters and buffers are weights, not activations: not counted. Nothing is
    backpropagated. ``batch``: a tokenizer's output such as ``{"input_ids": (batch, seq_len) int64,
    "attention_mask": (batch, seq_len)}`` (add ``"labels"`` ``(batch,)`` to include the loss), or one
    tensor. ``train``: training mode (dropout on, as in fine-tuning) or eval; the mode is restored.

    Returns the bytes saved for the backward pass: 0 when nothing requires a gradient (a fully frozen model). This is
    the part of activation memory that grows with batch size and sequence length; the true peak of a training step is
    somewhat higher (temporary buffers, the gradients being built)."""
    checks.instance("model", model, nn.Module, "a torch.nn.Module")
    if not isinstance(batch, Mapping):
        checks.instance("batch", batch, torch.Tensor, "a mapping of input tensors (e.g. a tokenizer's output) or a tensor")
    elif not batch:
        raise ValueError("batch is empty; expected inputs such as {'input_ids': ..., 'attention_mask': ...}")
    for key, value in batch.items() if isinstance(batch, Mapping) else ():
        checks.instance(f"batch[{key!r}]", value, torch.Tensor, "a torch.Tensor (tokenize with return_tensors='pt')")
    checks.instance("train", train, bool, "True or False")
    weights = {(t.untyped_storage().data_ptr(), t.device) for t in (*model.parameters(), *model.buffers())}
    saved: dict[Any, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:  # keyed by memory block: views of one block count once
        storage = tensor.untyped_storage()
        if (key := (storage.data_ptr(), tensor.device)) not in weights:
            saved.setdefault(key, storage.nbytes())
        return tensor

    modes = {module: module.training for module in model.modules()}
    model.train(train)
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(**batch) if isinstance(batch, Mapping) else model(batch)  # the output, dropped, frees the graph
    finally:
        for module, mode in modes.items():
            module.training = mode
    return int(sum(saved.values()))


def bert_activation_estimate(config: Any, batch_size: int, seq_len: int, *, dtype: str | torch.dtype = "float32",
                             mask_bytes: int | None = None, num_labels: int | None = None,
                             with_labels: bool = True) -> int:
    """Predicted activation bytes of one training forward pass of a BERT sequence classifier.

    In the book's notation (background chapter): batch size $b$, sequence length $L$, hidden size $d$, $h$ heads,
    FFN width $d_\\text{ff}$, $n_\\text{layers}$ layers, $E$ bytes per activation and $M$ bytes per dropout-mask
    element. Every encoder layer saves

    * $bL\\,(8d + 2d_\\text{ff})\\,E$: its input (read by the Q/K/V projections), Q, K, V, the attention context,
      the input and output of the first LayerNorm, the second LayerNorm's input (8 tensors of $bLd$),
      and the GELU's input and output ($2 \\times bLd_\\text{ff}$);
    * $2\\,bLd\\,M$: two dropout masks (after attention and after the FFN);
    * $bhL^2 (2E + M)$: the softmax output, its dropout mask and the dropped-out probabilities;
    * $16\\,bL$: the mean and inverse standard deviation of two LayerNorms (fp32).

    With $d_\\text{ff} = 4d$ this is $bLd(16E + 2M) + bhL^2(2E + M)$, the per-layer formula of Korthikanti et al.
    (2023) (``34 sbh + 5 a s^2 b`` in their notation, $s, h, a$ for our $L, d, h$, with $E = 2$, $M = 1$). The
    embeddings add the token and token-type ids ($16\\,bL$), the LayerNorm's input and statistics ($bLd\\,E + 8\\,bL$)
    and a dropout mask ($bLd\\,M$); the pooler and classifier head add the last hidden state that the pooler reads
    ($bLd\\,E$), $bd(2E + M)$, and with labels the log-probabilities ($bCE$), the labels ($8b$) and one scalar ($E$).

    ``config`` needs ``hidden_size``, ``num_attention_heads``, ``num_hidden_layers`` and ``intermediate_size`` (e.g.
    ``transformers.BertConfig()``); ``dtype`` gives $E$; ``mask_bytes`` is $M$, by default $E$ (PyTorch's dropout on
    the CPU saves its mask in the input's dtype; the fused CUDA dropout saves a bool mask: pass ``1``); ``num_labels``
    is $C$ (default ``config.num_labels``); ``with_labels`` says whether the batch carries ``labels`` (the loss is
    computed in the forward). Exact (to the byte) for ``transformers`` ``BertForSequenceClassification`` in fp32 on
    the CPU, in training mode with eager or SDPA attention and ``token_type_ids`` in the batch; elsewhere an estimate
    (fused attention kernels, for example, do not keep the $L^2$ matrices at all)."""
    b, s = checks.integer("batch_size", batch_size), checks.integer("seq_len", seq_len)
    h, a, layers, ffn = (checks.integer(f"config.{name}", getattr(config, name, None))
                         for name in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size"))
    classes = checks.integer("num_labels", getattr(config, "num_labels", 2) if num_labels is None else num_labels)
    e = bytes_per_element(dtype)
    m = e if mask_bytes is None else checks.integer("mask_bytes", mask_bytes)
    per_layer = b * s * (8 * h + 2 * ffn) * e + 2 * b * s * h * m + b * a * s * s * (2 * e + m) + 16 * b * s
    embeddings = 16 * b * s + b * s * h * e + 8 * b * s + b * s * h * m
    head = b * s * h * e + b * h * (2 * e + m) + (b * classes * e + 8 * b + e if with_labels else 0)
    return layers * per_layer + embeddings + head
