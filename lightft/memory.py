"""What a model costs in memory: weights, gradients, optimizer state and activations.

Chapter: "Background and core concepts" (``book/background.md``).

Three tools, from the cheapest to the most concrete:

* :func:`footprint` counts the *static* memory of a model from its parameters alone: the weights, and
  for training the gradients, the optimizer state and (in mixed precision) the fp32 master weights.
* :func:`bert_activation_estimate` predicts the *activation* memory of a BERT-style classifier from its
  configuration, batch size and sequence length, with a formula derived layer by layer.
* :func:`activation_bytes` *measures* the activation memory: it runs one training forward pass and
  adds up the tensors that autograd saves for the backward pass.

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

Assumptions, stated once:

* PyTorch keeps a gradient and the optimizer state of a parameter in that parameter's dtype (AdamW
  allocates ``exp_avg`` and ``exp_avg_sq`` with ``torch.zeros_like(param)``), so without mixed
  precision everything follows ``dtype``.
* ``mixed_precision=True`` is the classic recipe of Micikevicius et al. (2018): 16-bit weights and
  gradients for the forward and backward pass, plus an fp32 *master* copy of every trained weight and
  fp32 optimizer state. ``torch.autocast`` arrives at the same 16 bytes by another route: it keeps
  fp32 weights (4), fp32 gradients (4) and fp32 Adam moments (8), and casts to 16 bits on the fly.
* The optimizer's per-tensor ``step`` counter (one scalar per parameter tensor) and the framework's
  own workspace are ignored; activations are not static and are counted by the other two functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "MemoryFootprint",
    "OPTIMIZER_STATES",
    "activation_bytes",
    "bert_activation_estimate",
    "bytes_per_element",
    "footprint",
    "format_bytes",
]

#: Accepted dtype names (lower case) -> torch dtype.
_DTYPE_NAMES: dict[str, torch.dtype] = {
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "int8": torch.int8,
}

#: Optimizer name -> number of state tensors it keeps per parameter, each the size of the parameter.
OPTIMIZER_STATES: dict[str, int] = {
    "adamw": 2,          # first and second moment (exp_avg, exp_avg_sq)
    "adam": 2,
    "sgd_momentum": 1,   # one momentum buffer
    "sgd": 0,            # plain SGD keeps nothing between steps
}


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in set(_DTYPE_NAMES.values()):
            raise ValueError(f"unsupported dtype {dtype}; accepted: {_accepted_dtypes()}")
        return dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
        raise ValueError(f"unknown dtype {dtype!r}; accepted: {_accepted_dtypes()}")
    raise TypeError(f"dtype must be a string or a torch.dtype, got {type(dtype).__name__}")


def _accepted_dtypes() -> str:
    return ", ".join(repr(name) for name in _DTYPE_NAMES) + " or the matching torch dtypes"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def bytes_per_element(dtype: str | torch.dtype) -> int:
    """Bytes one number takes in ``dtype``: 8 for float64, 4 for float32, 2 for float16/bfloat16, 1 for int8.

    Accepts ``torch.float32`` etc. or the names ``"float32"``/``"fp32"``, ``"float16"``/``"fp16"``,
    ``"bfloat16"``/``"bf16"``, ``"int8"``, ``"float64"``/``"fp64"``.
    """
    return _dtype(dtype).itemsize


def format_bytes(n: int | float) -> str:
    """A byte count for humans, in binary units: ``format_bytes(3 * 2**20) == '3.0 MiB'``."""
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TypeError(f"format_bytes expects a number of bytes, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"a number of bytes cannot be negative, got {n}")
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class MemoryFootprint:
    """The static memory of a model, in bytes, as computed by :func:`footprint`.

    ``total`` is ``weights + gradients + master_weights + optimizer_state``; activations are not
    included (see :func:`activation_bytes`).
    """

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
        return {
            "parameters": self.parameters,
            "trainable_parameters": self.trainable_parameters,
            "dtype": self.dtype,
            "training": self.training,
            "optimizer": self.optimizer,
            "mixed_precision": self.mixed_precision,
            "weights": self.weights,
            "gradients": self.gradients,
            "master_weights": self.master_weights,
            "optimizer_state": self.optimizer_state,
            "total": self.total,
        }

    def __str__(self) -> str:
        mode = "inference" if not self.training else (
            f"training with {self.optimizer or 'no optimizer'}"
            + (", mixed precision" if self.mixed_precision else "")
        )
        lines = [
            f"{self.parameters:,} parameters ({self.trainable_parameters:,} trainable), {self.dtype}, {mode}",
            f"  weights          {format_bytes(self.weights):>11}",
        ]
        if self.training:
            lines += [
                f"  gradients        {format_bytes(self.gradients):>11}",
                f"  master weights   {format_bytes(self.master_weights):>11}",
                f"  optimizer state  {format_bytes(self.optimizer_state):>11}",
            ]
        lines.append(f"  total            {format_bytes(self.total):>11}"
                     f"  ({self.bytes_per_parameter:.1f} bytes per parameter)")
        return "\n".join(lines)


def _unique_parameters(model: nn.Module) -> list[nn.Parameter]:
    # model.parameters() already yields a tensor shared by two modules (tied weights) only once.
    return list(model.parameters())


def footprint(
    model: nn.Module,
    dtype: str | torch.dtype = "float32",
    *,
    training: bool = False,
    optimizer: str | None = "adamw",
    trainable_only: bool = True,
    mixed_precision: bool = False,
) -> MemoryFootprint:
    """The memory a model's parameters take, for inference or for training, in bytes.

    Args:
        model: any ``torch.nn.Module``; only its parameters are read (their dtype and device do not
            matter: ``dtype`` says what to count them in).
        dtype: what the weights are stored in: ``"float32"``/``"fp32"``, ``"float16"``/``"fp16"``,
            ``"bfloat16"``/``"bf16"``, ``"int8"``, ``"float64"``, or a torch dtype.
        training: ``False`` counts the weights only. ``True`` adds, for every trained parameter,
            a gradient and the optimizer state (and the fp32 master copy in mixed precision).
        optimizer: ``"adamw"`` or ``"adam"`` (two moments per parameter), ``"sgd_momentum"`` (one
            buffer), ``"sgd"`` or ``None`` (no state). Ignored when ``training=False``.
        trainable_only: ``True`` (default) trains only the parameters with ``requires_grad``, as
            PyTorch does: freezing a layer removes its gradients and optimizer state. ``False``
            treats every parameter as trained (full fine-tuning, whatever the flags say).
        mixed_precision: the classic mixed-precision recipe: ``dtype`` must be ``"float16"`` or
            ``"bfloat16"``; weights and gradients are 16-bit, and each trained parameter also has an
            fp32 master copy and fp32 optimizer state, i.e. 2 + 2 + 4 + 8 = 16 bytes with AdamW.

    Without mixed precision, gradients and optimizer state are in ``dtype``, as PyTorch keeps them.
    The optimizer's per-tensor step counter is ignored.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module``, or ``dtype`` is neither a string nor a dtype.
        ValueError: unknown dtype or optimizer; ``mixed_precision`` without a 16-bit dtype; training
            int8 weights (they have no gradients).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"footprint expects a torch.nn.Module, got {type(model).__name__}")
    weight_dtype = _dtype(dtype)
    for flag, value in (("training", training), ("trainable_only", trainable_only),
                        ("mixed_precision", mixed_precision)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    if optimizer is not None:
        if not isinstance(optimizer, str):
            raise TypeError(f"optimizer must be a string or None, got {type(optimizer).__name__}")
        optimizer = optimizer.strip().lower().replace("-", "_")
        if optimizer not in OPTIMIZER_STATES:
            raise ValueError(f"unknown optimizer {optimizer!r}; accepted: {sorted(OPTIMIZER_STATES)} or None")
    if mixed_precision and weight_dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"mixed_precision=True needs a 16-bit dtype ('float16' or 'bfloat16') for the weights, "
            f"got {_dtype_name(weight_dtype)}"
        )

    params = _unique_parameters(model)
    n_all = sum(p.numel() for p in params)
    n_trained = sum(p.numel() for p in params if p.requires_grad or not trainable_only)
    element = weight_dtype.itemsize
    gradients = master = state = 0
    if training:
        if not weight_dtype.is_floating_point and n_trained:
            raise ValueError(
                f"{_dtype_name(weight_dtype)} weights cannot be trained (they have no gradients); "
                "freeze them and train floating-point parameters (adapters, a head), or pick a float dtype"
            )
        n_states = OPTIMIZER_STATES[optimizer] if optimizer is not None else 0
        gradients = n_trained * element
        if mixed_precision:
            master = n_trained * torch.float32.itemsize
            state = n_trained * n_states * torch.float32.itemsize
        else:
            state = n_trained * n_states * element
    return MemoryFootprint(
        parameters=n_all,
        trainable_parameters=n_trained,
        dtype=_dtype_name(weight_dtype),
        training=training,
        optimizer=optimizer if training else None,
        mixed_precision=mixed_precision,
        weights=n_all * element,
        gradients=gradients,
        master_weights=master,
        optimizer_state=state,
    )


def _storage_key_and_bytes(tensor: torch.Tensor) -> tuple[Any, int]:
    """Identify the memory block a tensor lives in, and its size: views of one block count once."""
    try:
        storage = tensor.untyped_storage()
        return ("storage", storage.data_ptr(), tensor.device), storage.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):  # e.g. a tensor subclass without storage
        return ("tensor", id(tensor)), tensor.numel() * tensor.element_size()


def activation_bytes(model: nn.Module, batch: Mapping[str, torch.Tensor] | torch.Tensor, *, train: bool = True) -> int:
    """Measure the activation memory of one forward pass: bytes that autograd keeps for the backward.

    Runs ``model(**batch)`` (or ``model(batch)`` for a tensor) once under
    ``torch.autograd.graph.saved_tensors_hooks`` and adds up every tensor the forward pass saves for
    the backward pass. Tensors that share memory (views, a tensor saved by two operations) are
    counted once, with the size of the whole memory block they keep alive. The model's own
    parameters and buffers are not counted: they are weights, not activations. Nothing is
    backpropagated and the model's parameters are not changed.

    Args:
        model: a ``torch.nn.Module``, e.g. ``lightft.load_model("minilm-l6")``.
        batch: the model's inputs: a mapping such as a tokenizer's output, ``{"input_ids": (batch,
            seq_len) int64, "attention_mask": (batch, seq_len), ...}`` (add ``"labels"``, shape
            ``(batch,)``, to include the loss), or a single input tensor.
        train: run in training mode (dropout on, as in fine-tuning; default) or in eval mode. The
            model's mode is restored afterwards.

    Returns:
        The number of bytes saved for the backward pass. It is 0 when nothing requires a gradient
        (a fully frozen model): then autograd keeps nothing.

    This is the memory that is held between the forward and the backward pass, the part of
    activation memory that grows with batch size and sequence length. The true peak of a training
    step is somewhat higher (temporary buffers, the gradients being built).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"activation_bytes expects a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch, Mapping):
        if not batch:
            raise ValueError("batch is empty; expected inputs such as {'input_ids': ..., 'attention_mask': ...}")
        for key, value in batch.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"batch[{key!r}] is a {type(value).__name__}; every input must be a torch.Tensor "
                    "(tokenize with return_tensors='pt')"
                )
    elif not isinstance(batch, torch.Tensor):
        raise TypeError(
            f"batch must be a mapping of input tensors (e.g. a tokenizer's output) or a tensor, "
            f"got {type(batch).__name__}"
        )
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, got {train!r}")

    weights = {_storage_key_and_bytes(t)[0] for t in (*model.parameters(), *model.buffers())}
    saved: dict[Any, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key, size = _storage_key_and_bytes(tensor)
        if key not in weights:
            saved.setdefault(key, size)
        return tensor

    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    modes = {module: module.training for module in model.modules()}
    model.train(train)
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            output = model(**batch) if isinstance(batch, Mapping) else model(batch)
        del output  # frees the graph and everything it saved
    finally:
        for module, mode in modes.items():
            module.training = mode
    return int(sum(saved.values()))


def _config_int(config: Any, name: str) -> int:
    value = getattr(config, name, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"config.{name} must be a positive integer, got {value!r}; expected a BERT-style config "
            "(transformers.BertConfig or a model's .config)"
        )
    return value


def bert_activation_estimate(
    config: Any,
    batch_size: int,
    seq_len: int,
    *,
    dtype: str | torch.dtype = "float32",
    mask_bytes: int | None = None,
    num_labels: int | None = None,
    with_labels: bool = True,
) -> int:
    """Predicted activation bytes of one training forward pass of a BERT sequence classifier.

    With batch size $b$, sequence length $s$, hidden size $h$, $a$ heads, FFN width $I$, $L$ layers,
    $E$ bytes per activation and $M$ bytes per dropout-mask element, every encoder layer saves

    * $bs\\,(8h + 2I)\\,E$: its input (read by the Q/K/V projections), Q, K, V, the attention context,
      the input and output of the first LayerNorm, the second LayerNorm's input (8 tensors of $bsh$),
      and the GELU's input and output ($2 \\times bsI$);
    * $2\\,bsh\\,M$: two dropout masks (after attention and after the FFN);
    * $b a s^2 (2E + M)$: the softmax output, its dropout mask and the dropped-out probabilities;
    * $16\\,bs$: the mean and inverse standard deviation of two LayerNorms (fp32).

    With $I = 4h$ this is $bsh(16E + 2M) + bas^2(2E + M)$, the per-layer formula of Korthikanti et
    al. (2023) (``34 bsh + 5 a s^2 b`` for $E = 2$, $M = 1$). The embeddings add the token and
    token-type ids ($16\\,bs$), the LayerNorm's input and statistics ($bsh\\,E + 8\\,bs$) and a dropout
    mask ($bsh\\,M$); the pooler and classifier head add the last hidden state that the pooler reads
    ($bsh\\,E$), $bh(2E + M)$, and with labels the log-probabilities ($bCE$), the labels ($8b$) and
    one scalar ($E$).

    Args:
        config: a BERT-style config with ``hidden_size``, ``num_attention_heads``,
            ``num_hidden_layers``, ``intermediate_size`` (e.g. ``transformers.BertConfig()``).
        batch_size, seq_len: the shape of the batch, $b$ and $s$.
        dtype: the activations' dtype ($E$ bytes).
        mask_bytes: $M$. ``None`` means $E$, what PyTorch's dropout saves on the CPU (a mask in the
            input's dtype); on CUDA the fused dropout saves a bool mask: pass ``1``.
        num_labels: classes of the head ($C$); default ``config.num_labels``.
        with_labels: whether the batch carries ``labels`` (the loss is computed in the forward).

    Exact (to the byte) for ``transformers`` ``BertForSequenceClassification`` in fp32 on the CPU,
    in training mode with eager or SDPA attention and ``token_type_ids`` in the batch; elsewhere an
    estimate (fused attention kernels, for example, do not keep the $s^2$ matrices at all).
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    h = _config_int(config, "hidden_size")
    a = _config_int(config, "num_attention_heads")
    layers = _config_int(config, "num_hidden_layers")
    ffn = _config_int(config, "intermediate_size")
    classes = num_labels if num_labels is not None else getattr(config, "num_labels", 2)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"num_labels must be a positive integer, got {classes!r}")
    e = bytes_per_element(dtype)
    m = e if mask_bytes is None else mask_bytes
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"mask_bytes must be a positive integer (1 for bool masks) or None, got {mask_bytes!r}")
    b, s = batch_size, seq_len
    per_layer = b * s * (8 * h + 2 * ffn) * e + 2 * b * s * h * m + b * a * s * s * (2 * e + m) + 16 * b * s
    embeddings = 16 * b * s + b * s * h * e + 8 * b * s + b * s * h * m
    head = b * s * h * e + b * h * (2 * e + m)
    if with_labels:
        head += b * classes * e + 8 * b + e
    return layers * per_layer + embeddings + head
