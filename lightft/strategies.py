"""Lightweight fine-tuning strategies, each a short function a reader can call.

Chapter: "Lightweight strategies, measured" (``benchmarks/strategies.py`` reruns its measurements): which
parameters train (:func:`freeze_encoder`, :func:`bitfit`, :func:`apply_lora`), memory for time
(:func:`enable_gradient_checkpointing`, :func:`accumulate_gradients`), int8 inference
(:func:`quantize_int8`) and distillation into a shallower student (:func:`distill`)."""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightft import checks
from lightft.models import quiet_transformers

#: The source article's listing: every text padded to 128 tokens, fp32, batch 16, 3 epochs, lr 5e-5
#: (10 % warm-up instead of the listing's 500 steps, which a small budget would never finish).
USUAL_RECIPE: dict[str, Any] = dict(max_length=128, padding="max_length", precision="fp32", batch_size=16,
                                    epochs=3, learning_rate=5e-5)
#: What the strategies chapter recommends for the same model and data: dynamic padding, at most 64
#: tokens, low-precision autocast where the hardware has it ("auto": bf16 on a CPU or GPU with bf16,
#: fp16 with a scaler on an older GPU, else fp32), a larger learning rate; the same batch and epochs.
LIGHTWEIGHT_RECIPE: dict[str, Any] = dict(max_length=64, padding="dynamic", precision="auto", batch_size=16,
                                          epochs=3, learning_rate=1e-4)

#: Parameter-name parts of the task head (BERT and DistilBERT classifiers), always kept trainable.
HEAD = ("classifier", "pooler", "pre_classifier")
_MODULE = (nn.Module, "a torch.nn.Module")  # what checks.instance accepts for a model


def _stack(model: nn.Module) -> nn.Module:
    """The module whose ``.layer`` is the list of transformer layers (BERT's encoder, DistilBERT's transformer)."""
    for module in model.modules():
        if isinstance(getattr(module, "layer", None), nn.ModuleList):
            return module
    raise ValueError("expected a BERT or DistilBERT model (no encoder.layer / transformer.layer list found)")


def _is_head(name: str) -> bool:
    return any(part in HEAD for part in name.split("."))


def freeze_encoder(model: nn.Module, train_last_layers: int = 0) -> nn.Module:
    """Freeze the embeddings and all but the last ``train_last_layers`` layers, in place; the head (:data:`HEAD`)
    stays trainable: ``train_last_layers=0`` is a linear probe on frozen features. Returns ``model``."""
    layers = _stack(checks.instance("model", model, *_MODULE)).layer
    if checks.integer("train_last_layers", train_last_layers, 0) > len(layers):
        raise ValueError(f"train_last_layers must be in 0..{len(layers)}, got {train_last_layers!r}")
    for name, parameter in model.named_parameters():
        parameter.requires_grad = _is_head(name)
    for parameter in layers[len(layers) - train_last_layers:].parameters():
        parameter.requires_grad = True
    return model


def bitfit(model: nn.Module) -> nn.Module:
    """BitFit: train only the bias terms (about 0.1 % of an encoder) and the task head, in place."""
    _stack(checks.instance("model", model, *_MODULE))  # a BERT-like model
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.endswith(".bias") or _is_head(name)
    return model


def apply_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1,
               target_modules: Sequence[str] = ("query", "value")) -> nn.Module:
    """Wrap a sequence-classification model with LoRA adapters (``peft``): frozen base, trainable head.

    Each targeted linear layer ``W`` (``d_out x d_in``) becomes ``W + (alpha / r) B A``, ``A`` (``r x d_in``)
    random and ``B`` (``d_out x r``) zero: the model starts out unchanged. ``target_modules``: BERT's
    ``query``, ``key``, ``value``, ``dense``; DistilBERT's ``q_lin``, ``v_lin``, ... Returns a ``PeftModel``."""
    from peft import LoraConfig, TaskType, get_peft_model

    checks.instance("model", model, *_MODULE)
    checks.integer("r (the LoRA rank)", r)
    checks.number("dropout", dropout, 0, 1, inclusive=True)
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in target_modules if t not in names]
    if not target_modules or missing:
        raise ValueError(f"target_modules {list(target_modules)}: no linear layer named {missing}; "
                         f"this model's linear layers are named {sorted(names)}")
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(target_modules), modules_to_save=[h for h in HEAD if h in present])
    with warnings.catch_warnings():  # peft asks transformers a deprecated question (FutureWarning)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)


def saved_size(model: nn.Module) -> int:
    """Bytes the model takes when saved: ``save_pretrained`` (safetensors; for a peft model only the
    adapter and head), or ``torch.save`` of the state dict for other modules (e.g. an int8 model)."""
    checks.instance("model", model, *_MODULE)
    if hasattr(model, "save_pretrained") and not any(type(m).__module__.startswith("torch.ao.nn.quantized")
                                                     for m in model.modules()):
        with quiet_transformers(), tempfile.TemporaryDirectory(prefix="lightft-size-") as folder:
            model.save_pretrained(folder, safe_serialization=True)
            return sum(p.stat().st_size for p in Path(folder).rglob("*.safetensors"))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def enable_gradient_checkpointing(model: nn.Module) -> nn.Module:
    """Recompute each layer's activations in the backward pass instead of storing them (non-reentrant),
    in place: activation memory saved for about one extra forward pass of time. Returns ``model``."""
    if not getattr(checks.instance("model", model, *_MODULE), "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
    if hasattr(model, "activation_checkpointing_enable"):  # the newer transformers name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def accumulate_gradients(model: nn.Module, batch: dict[str, torch.Tensor], micro_batch_size: int) -> float:
    """Forward and backward ``batch`` (tensors ``(batch, ...)``, ``labels`` included) in micro-batches; return
    the mean loss. Each micro-batch's loss is weighted by its share of the examples, so the summed gradient
    is the whole batch's (without dropout, up to rounding). Gradients are *added* to ``.grad``."""
    checks.instance("model", model, *_MODULE)
    if not isinstance(batch, dict) or "labels" not in batch:
        raise ValueError("batch must be a dict of tensors that includes labels")
    checks.integer("micro_batch_size", micro_batch_size)
    total, loss_sum = batch["labels"].shape[0], 0.0
    for start in range(0, total, micro_batch_size):
        micro = {k: v[start:start + micro_batch_size] for k, v in batch.items()}
        share = micro["labels"].shape[0] / total
        loss = model(**micro).loss
        (loss * share).backward()
        loss_sum += float(loss.detach()) * share
    return loss_sum


def quantize_int8(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with int8 ``nn.Linear`` weights (per tensor), activations quantized per batch,
    int32 accumulation (Jacob et al. 2018); embeddings and LayerNorm stay fp32. ``quantize_dynamic`` is
    deprecated in favour of ``torchao``; its warning is silenced."""
    from accelerate.utils import extract_model_from_parallel

    quantized = copy.deepcopy(checks.instance("model", model, *_MODULE)).cpu().eval()
    extract_model_from_parallel(quantized, keep_fp32_wrapper=False)  # no autocast wrapper left by a Trainer
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(quantiz|deprecat).*")
        return torch.ao.quantization.quantize_dynamic(quantized, {nn.Linear}, dtype=torch.qint8)


def shallow_student(teacher: nn.Module, keep_layers: Sequence[int] | None = None) -> nn.Module:
    """A copy of ``teacher`` with only layers ``keep_layers`` (default ``0, 2, 4, ...``: half the depth), same
    embeddings and head, as DistilBERT was made from BERT (Sanh et al. 2019). The teacher is unchanged."""
    n = len(_stack(checks.instance("teacher", teacher, *_MODULE)).layer)
    keep = list(range(0, n, 2)) if keep_layers is None else [checks.integer("a layer index", i, 0) for i in keep_layers]
    if not keep or max(keep) >= n:
        raise ValueError(f"keep_layers must be a non-empty list of layer indices in 0..{n - 1}, got {keep_layers!r}")
    student = copy.deepcopy(teacher)
    stack = _stack(student)
    stack.layer = nn.ModuleList([stack.layer[i] for i in keep])
    student.config.num_hidden_layers = len(keep)  # DistilBertConfig maps it to n_layers
    for i, layer in enumerate(stack.layer):  # renumber for attention implementations that use layer_idx
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    return student


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      temperature: float = 2.0, alpha: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    """Soft targets with temperature plus hard labels (Hinton et al. 2015), written out as the chapter does.

    ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, labels)`` per example, logits
    ``s``, ``t`` ``(batch, classes)``, ``labels`` ``(batch,)``; ``T^2`` keeps the soft term's gradients the same
    size as ``T`` changes. ``reduction``: ``"mean"``, ``"sum"`` or ``"none"`` (shape ``(batch,)``)."""
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student and teacher logits must both be (batch, classes); got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    checks.number("temperature", temperature, 0)
    checks.number("alpha", alpha, 0, 1, inclusive=True)
    checks.choice("reduction", reduction, ("mean", "sum", "none"))
    s, t = student_logits.float(), teacher_logits.detach().float()
    soft = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                    reduction="none", log_target=True).sum(-1) * temperature**2
    loss = alpha * soft + (1 - alpha) * F.cross_entropy(s, labels, reduction="none")
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def distill(student: nn.Module, teacher: nn.Module, data: Any, *, temperature: float = 2.0, alpha: float = 0.5,
            **finetune_kwargs):
    """:func:`lightft.finetune` of ``student`` with :func:`distillation_loss` against ``teacher``'s logits.

    A forward hook on the student runs the frozen teacher on the same batch in training steps; evaluation
    uses plain cross-entropy. Both share a tokenizer. Returns the ``FinetuneResult``."""
    from lightft.train import finetune

    checks.instance("student", student, *_MODULE)
    checks.instance("teacher", teacher, *_MODULE)
    checks.number("temperature", temperature, 0)
    checks.number("alpha", alpha, 0, 1, inclusive=True)
    teacher.eval().requires_grad_(False)

    def run_teacher(module, args, kwargs, output):
        if module.training:
            inputs = {k: v for k, v in kwargs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            with torch.no_grad():
                output["teacher_logits"] = teacher.to(output["logits"].device)(**inputs).logits
        return output

    def loss(outputs, labels, num_items_in_batch=None):
        if "teacher_logits" not in outputs:  # evaluation: the hard-label loss
            per_example = F.cross_entropy(outputs["logits"].float(), labels, reduction="none")
        else:
            per_example = distillation_loss(outputs["logits"], outputs["teacher_logits"], labels,
                                            temperature=temperature, alpha=alpha, reduction="none")
        # with gradient accumulation the Trainer expects sum / items
        return per_example.mean() if num_items_in_batch is None else per_example.sum() / num_items_in_batch

    handle = student.register_forward_hook(run_teacher, with_kwargs=True)
    try:
        return finetune(student, data, compute_loss_func=loss, **finetune_kwargs)
    finally:
        handle.remove()
