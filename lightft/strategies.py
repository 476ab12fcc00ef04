"""Lightweight fine-tuning strategies, each a short function a reader can call.

Chapter: "Lightweight strategies, measured".

* :func:`freeze_encoder` (train the head and the last ``k`` layers) and :func:`bitfit` (train only
  the biases and the head, Ben Zaken et al. 2022) change which parameters train.
* :func:`apply_lora` wraps a model with LoRA adapters (Hu et al. 2021) using ``peft``;
  :func:`saved_size` says how many bytes a model or adapter takes on disk.
* :func:`enable_gradient_checkpointing` trades time for activation memory.
* :func:`accumulate_gradients` splits a batch into micro-batches and sums their gradients: the same
  gradient as the whole batch, at a fraction of the activation memory.
* :func:`quantize_int8` converts the linear layers to int8 with dynamic activation quantization, for
  CPU inference.
* :func:`shallow_student`, :func:`distillation_loss` and :func:`distill` distil a fine-tuned teacher
  into a student of half its depth (Hinton et al. 2015; Sanh et al. 2019).
"""

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

__all__ = [
    "LIGHTWEIGHT_RECIPE",
    "USUAL_RECIPE",
    "accumulate_gradients",
    "apply_lora",
    "benchmark_strategies",
    "bitfit",
    "distill",
    "distillation_loss",
    "enable_gradient_checkpointing",
    "format_benchmark",
    "freeze_encoder",
    "quantize_int8",
    "saved_size",
    "shallow_student",
]

#: Parameter-name fragments of the task head (BERT and DistilBERT classifiers), always kept trainable.
HEAD = ("classifier", "pooler", "pre_classifier")


def _check_module(model: Any, where: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where} expects a torch.nn.Module, got {type(model).__name__}")
    return model


def _layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer layers of a BERT or DistilBERT model (with or without a head)."""
    for path in ("bert.encoder.layer", "encoder.layer", "distilbert.transformer.layer", "transformer.layer"):
        node: Any = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return node
    raise ValueError("expected a BERT or DistilBERT model (no encoder.layer / transformer.layer list found)")


def _is_head(name: str) -> bool:
    return any(part in HEAD for part in name.split("."))


def freeze_encoder(model: nn.Module, train_last_layers: int = 0) -> nn.Module:
    """Freeze the embeddings and all but the last ``train_last_layers`` transformer layers, in place.

    The task head (``classifier``, and ``pooler`` / ``pre_classifier`` where present) stays trainable.
    ``train_last_layers=0`` trains the head only (a linear probe on frozen features). Returns ``model``.
    """
    _check_module(model, "freeze_encoder")
    layers = _layers(model)
    if isinstance(train_last_layers, bool) or not isinstance(train_last_layers, int) or not 0 <= train_last_layers <= len(layers):
        raise ValueError(f"train_last_layers must be an integer in 0..{len(layers)}, got {train_last_layers!r}")
    for name, parameter in model.named_parameters():
        parameter.requires_grad = _is_head(name)
    for layer in list(layers)[len(layers) - train_last_layers:]:
        for parameter in layer.parameters():
            parameter.requires_grad = True
    return model


def bitfit(model: nn.Module) -> nn.Module:
    """BitFit: train only the bias terms (and the task head), in place; everything else is frozen.

    Biases are about 0.1 % of an encoder's parameters (Ben Zaken et al. 2022). Returns ``model``.
    """
    _check_module(model, "bitfit")
    _layers(model)  # a BERT-like model
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.endswith(".bias") or _is_head(name)
    return model


def apply_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1,
               target_modules: Sequence[str] = ("query", "value")) -> nn.Module:
    """Wrap a sequence-classification model with LoRA adapters (``peft``), frozen base, trainable head.

    Each targeted linear layer ``W`` (``d_out x d_in``) gets ``W + (alpha / r) B A`` with ``A``
    (``r x d_in``, random) and ``B`` (``d_out x r``, zeros) trainable: the model starts out unchanged.
    ``target_modules`` names the linear layers (BERT: ``query``, ``key``, ``value``, ``dense``;
    DistilBERT: ``q_lin``, ``v_lin``, ...). The head is trained in full (peft's ``modules_to_save``).
    Returns a ``peft.PeftModel``; :func:`lightft.finetune` accepts it and keeps the best adapter.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    _check_module(model, "apply_lora")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r (the LoRA rank) must be a positive integer, got {r!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in target_modules if t not in names]
    if not target_modules or missing:
        raise ValueError(f"target_modules {list(target_modules)}: no linear layer named {missing}; "
                         f"this model's linear layers are named {sorted(names)}")
    head = [h for h in ("classifier", "pre_classifier", "pooler") if h in {n.split(".")[-1] for n, _ in model.named_modules()}]
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(target_modules), modules_to_save=head)
    with warnings.catch_warnings():  # peft asks transformers a deprecated question (FutureWarning)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)


def saved_size(model: nn.Module) -> int:
    """Bytes the model takes when saved: ``save_pretrained`` (safetensors; for a peft model only the
    adapter and head), or ``torch.save`` of the state dict for other modules (e.g. an int8 model)."""
    _check_module(model, "saved_size")
    quantized = any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
    if hasattr(model, "save_pretrained") and not quantized:
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            with tempfile.TemporaryDirectory(prefix="lightft-size-") as folder:
                model.save_pretrained(folder, safe_serialization=True)
                return sum(p.stat().st_size for p in Path(folder).rglob("*.safetensors"))
        finally:
            if bars:
                hf_logging.enable_progress_bar()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def enable_gradient_checkpointing(model: nn.Module) -> nn.Module:
    """Recompute each layer's activations in the backward pass instead of storing them, in place.

    Saves activation memory (roughly all but one layer's worth) for about one extra forward pass of
    time. Uses the non-reentrant implementation. Returns ``model``.
    """
    _check_module(model, "enable_gradient_checkpointing")
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
    if hasattr(model, "activation_checkpointing_enable"):   # transformers >= 5.2x: the new name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def accumulate_gradients(model: nn.Module, batch: dict[str, torch.Tensor], micro_batch_size: int) -> float:
    """Forward and backward ``batch`` in micro-batches of ``micro_batch_size``; return the mean loss.

    Each micro-batch's mean loss is weighted by its share of the examples, so the summed gradient
    equals the gradient of the whole batch's mean loss (in eval mode, i.e. without dropout, up to
    rounding). Gradients are *added* to ``.grad``: call ``optimizer.step()`` and ``zero_grad()`` after.
    Tensors in ``batch`` have shape ``(batch, ...)`` and include ``labels``.
    """
    _check_module(model, "accumulate_gradients")
    if not isinstance(batch, dict) or "labels" not in batch:
        raise ValueError("batch must be a dict of tensors that includes labels")
    if isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, int) or micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be a positive integer, got {micro_batch_size!r}")
    total = batch["labels"].shape[0]
    loss_sum = 0.0
    for start in range(0, total, micro_batch_size):
        micro = {k: v[start:start + micro_batch_size] for k, v in batch.items()}
        share = micro["labels"].shape[0] / total
        loss = model(**micro).loss
        (loss * share).backward()
        loss_sum += float(loss.detach()) * share
    return loss_sum


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers hold int8 weights (dynamic quantization, CPU).

    Weights are quantized once (per tensor, symmetric range); activations are quantized on the fly
    per batch, and the int8 products are accumulated in int32 and rescaled (Jacob et al. 2018).
    Embeddings and LayerNorm stay fp32. Uses ``torch.ao.quantization.quantize_dynamic``, which torch
    has deprecated in favour of the separate ``torchao`` package; its deprecation warning is silenced
    here. The original model is left unchanged.
    """
    _check_module(model, "quantize_int8")
    from accelerate.utils import extract_model_from_parallel

    quantized = copy.deepcopy(model).eval()
    extract_model_from_parallel(quantized, keep_fp32_wrapper=False)  # no autocast wrapper left by a Trainer
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(quantiz|deprecat).*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        quantized = torch.ao.quantization.quantize_dynamic(quantized, {nn.Linear}, dtype=torch.qint8)
    return quantized


def shallow_student(teacher: nn.Module, keep_layers: Sequence[int] | None = None) -> nn.Module:
    """A student with a subset of the teacher's layers (default every other one), initialised from it.

    As DistilBERT was made from BERT (Sanh et al. 2019): same embeddings, same head, layers
    ``keep_layers`` copied (default ``0, 2, 4, ...``: half the depth). The teacher is not changed.
    """
    _check_module(teacher, "shallow_student")
    layers = _layers(teacher)
    keep = list(range(0, len(layers), 2)) if keep_layers is None else list(keep_layers)
    if not keep or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(layers) for i in keep):
        raise ValueError(f"keep_layers must be a non-empty list of layer indices in 0..{len(layers) - 1}, got {keep_layers!r}")
    student = copy.deepcopy(teacher)
    student_layers = _layers(student)
    kept = nn.ModuleList([student_layers[i] for i in keep])
    for path in ("bert.encoder", "encoder", "distilbert.transformer", "transformer"):
        node: Any = student
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if node is not None and getattr(node, "layer", None) is student_layers:
            node.layer = kept
            break
    config = student.config
    if hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = len(keep)
    if hasattr(config, "n_layers"):
        config.n_layers = len(keep)
    for i, layer in enumerate(kept):  # renumber for attention implementations that use layer_idx
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    return student


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      temperature: float = 2.0, alpha: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    """Soft targets with temperature plus hard labels (Hinton et al. 2015).

    ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, labels)`` per example,
    with student logits ``s`` and teacher logits ``t`` of shape ``(batch, classes)`` and ``labels`` of
    shape ``(batch,)``. The ``T^2`` keeps the soft term's gradients the same size as ``T`` changes.
    ``reduction``: ``"mean"``, ``"sum"`` or ``"none"`` (shape ``(batch,)``).
    """
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student and teacher logits must both be (batch, classes); got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")
    s = student_logits.float()
    t = teacher_logits.detach().float()
    soft = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                    reduction="none", log_target=True).sum(-1) * temperature**2
    hard = F.cross_entropy(s, labels, reduction="none")
    loss = alpha * soft + (1 - alpha) * hard
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def distill(student: nn.Module, teacher: nn.Module, data: Any, *, temperature: float = 2.0, alpha: float = 0.5,
            **finetune_kwargs):
    """Fine-tune ``student`` on ``data`` with :func:`distillation_loss` against ``teacher``'s logits.

    The teacher (frozen, eval mode) sees the same batch as the student: a forward hook on the student
    runs it during training steps; evaluation uses the plain cross-entropy. Both must share a
    tokenizer. ``finetune_kwargs`` go to :func:`lightft.finetune`; returns its ``FinetuneResult``.
    """
    from lightft.train import finetune

    _check_module(student, "distill")
    _check_module(teacher, "distill")
    distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long),
                      temperature=temperature, alpha=alpha)  # validates temperature and alpha
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad = False

    def run_teacher(module, args, kwargs, output):
        if module.training:
            inputs = {k: v for k, v in kwargs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            device = output["logits"].device
            if next(teacher.parameters()).device != device:
                teacher.to(device)
            with torch.no_grad():
                output["teacher_logits"] = teacher(**inputs).logits
        return output

    def loss(outputs, labels, num_items_in_batch=None):
        if "teacher_logits" not in outputs:  # evaluation: the hard-label loss
            per_example = F.cross_entropy(outputs["logits"].float(), labels, reduction="none")
        else:
            per_example = distillation_loss(outputs["logits"], outputs["teacher_logits"], labels,
                                            temperature=temperature, alpha=alpha, reduction="none")
        if num_items_in_batch is not None:  # gradient accumulation: the Trainer expects sum / items
            return per_example.sum() / num_items_in_batch
        return per_example.mean()

    handle = student.register_forward_hook(run_teacher, with_kwargs=True)
    try:
        return finetune(student, data, compute_loss_func=loss, **finetune_kwargs)
    finally:
        handle.remove()


#: The source article's listing: every text padded to 128 tokens, fp32, batch 16, 3 epochs, lr 5e-5
#: (10 % warm-up instead of the listing's 500 steps, which a small budget would never finish).
USUAL_RECIPE: dict[str, Any] = dict(max_length=128, padding="max_length", precision="fp32", batch_size=16,
                                    epochs=3, learning_rate=5e-5)
#: What the strategies chapter recommends for the same model and data: dynamic padding, at most 64
#: tokens, low-precision autocast where the hardware has it ("auto": bf16 on a CPU or GPU with bf16,
#: fp16 with a scaler on an older GPU, else fp32), a larger learning rate; the same batch and epochs.
LIGHTWEIGHT_RECIPE: dict[str, Any] = dict(max_length=64, padding="dynamic", precision="auto", batch_size=16,
                                          epochs=3, learning_rate=1e-4)


def benchmark_strategies(model: str = "minilm-l6", data: str = "rotten_tomatoes", *, train_limit: int = 480,
                         eval_limit: int = 500, steps: int = 3, seed: int = 0, headline: bool = True) -> dict[str, Any]:
    """Rerun the strategies chapter's measurements: the headline comparison and per-strategy throughput.

    The *usual* recipe (pad to 128, fp32, batch 16, 3 epochs, lr 5e-5) and the *lightweight* recipe
    (dynamic padding, bf16 autocast where supported (fp16 with a scaler on an older GPU), max length 64,
    3 epochs, lr 1e-4; :data:`USUAL_RECIPE`, :data:`LIGHTWEIGHT_RECIPE`) are fine-tuned on ``train_limit`` examples and tested on ``eval_limit``
    (skipped with ``headline=False``). Each strategy's training throughput is measured over ``steps``
    warmed-up steps of batch 16 on real training sentences. Runs on a GPU when one is available.
    Returns a JSON-friendly dict: ``hardware``, ``peak_gflops``, ``headline`` and ``strategies`` (rows).
    """
    from lightft.data import load_dataset
    from lightft.environment import hardware_summary
    from lightft.measure import (batch_accuracy, measure_accuracy, measure_inference, measure_training,
                                 peak_matmul_flops, text_batches, training_flops_per_token)
    from lightft.models import load_model, load_tokenizer
    from lightft.train import resolve_precision

    for name, value in (("train_limit", train_limit), ("eval_limit", eval_limit), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    low = resolve_precision("auto")[0]
    peak = {"fp32": peak_matmul_flops("fp32", size=2048 if device == "cuda" else 1024)}
    if low != "fp32":
        peak[low] = peak_matmul_flops(low, size=2048 if device == "cuda" else 1024)
    dataset = load_dataset(data, seed=seed)
    tokenizer = load_tokenizer(model)
    texts = dataset["train"]["text"][:max(train_limit, 16 * (steps + 1))]
    labels = dataset["train"]["label"][:len(texts)]
    out: dict[str, Any] = {"hardware": hardware_summary(), "device": device, "model": model, "data": data,
                           "train_limit": train_limit, "eval_limit": eval_limit, "low_precision": low,
                           "peak_gflops": {k: round(v / 1e9, 1) for k, v in peak.items()}}

    if headline:
        recipes = {"usual": dict(USUAL_RECIPE), "lightweight": {**LIGHTWEIGHT_RECIPE, "precision": low}}
        rows = {}
        for name, recipe in recipes.items():
            run = measure_accuracy(model, dataset, train_limit=train_limit, eval_limit=eval_limit, seed=seed, **recipe)
            flops = training_flops_per_token(run.pop("model"), recipe["max_length"])
            rows[name] = {"test_accuracy": round(run["accuracy"], 4), "train_seconds": round(run["train_seconds"], 2),
                          "examples_per_s": round(run["examples_per_s"], 2),
                          "tokens_per_s": round(run["tokens_per_s"], 1),
                          "mfu": round(run["tokens_per_s"] * flops / peak[recipe["precision"]], 4),
                          "peak_memory_mib": round(run["peak_memory_bytes"] / 2**20, 1), **recipe}
        rows["speedup"] = round(rows["usual"]["train_seconds"] / rows["lightweight"]["train_seconds"], 2)
        rows["accuracy_gap_points"] = round(100 * (rows["lightweight"]["test_accuracy"] - rows["usual"]["test_accuracy"]), 2)
        out["headline"] = rows

    def fresh():
        return load_model(model, seed=seed).to(device)

    def train_row(name, net, batches, precision="fp32", **kwargs):
        t = measure_training(net, batches, steps=steps, precision=precision, peak_flops=peak[precision], **kwargs)
        return {"strategy": name, "mode": "train", "precision": precision, "examples_per_s": round(t.examples_per_s, 2),
                "tokens_per_s": round(t.tokens_per_s, 1), "memory_increase_mib": round(t.memory_increase_bytes / 2**20, 1),
                "mfu": round(t.mfu, 4)}

    def infer_row(name, net, batches, precision="fp32"):
        t = measure_inference(net, batches, precision=precision)
        return {"strategy": name, "mode": "inference", "precision": precision,
                "examples_per_s": round(t.examples_per_s, 2), "tokens_per_s": round(t.tokens_per_s, 1),
                "memory_increase_mib": round(t.memory_increase_bytes / 2**20, 1), "mfu": None}

    pad128 = text_batches(tokenizer, texts, labels, batch_size=16, max_length=128, padding="max_length")
    dyn64 = text_batches(tokenizer, texts, labels, batch_size=16, max_length=64)
    grouped = text_batches(tokenizer, texts, labels, batch_size=16, max_length=64, group_by_length=True, seed=seed)
    net = fresh()
    rows = [train_row("pad 128", net, pad128), train_row("dynamic padding, max 64", net, dyn64)]
    if low != "fp32":
        rows += [train_row("pad 128", net, pad128, low), train_row("dynamic padding, max 64", net, dyn64, low)]
    rows += [train_row("dynamic + length-grouped, max 64", net, grouped, low),
             train_row("batch 4 x 4 accumulation, max 64", net,
                       text_batches(tokenizer, texts, labels, batch_size=4, max_length=64), low, accumulation_steps=4),
             train_row("gradient checkpointing, pad 128", enable_gradient_checkpointing(fresh()), pad128),
             train_row("head only, max 64", freeze_encoder(fresh()), dyn64, low),
             train_row("BitFit, max 64", bitfit(fresh()), dyn64, low),
             train_row("LoRA r=8, max 64", apply_lora(fresh()).to(device), dyn64, low)]
    teacher = fresh()
    rows.append(infer_row("inference fp32, max 64", teacher, dyn64))
    if low != "fp32":
        rows.append(infer_row(f"inference {low}, max 64", teacher, dyn64, low))
    if device == "cpu":
        int8 = quantize_int8(teacher)
        rows.append(infer_row("inference int8 dynamic, max 64", int8, dyn64))
        rows[-1]["accuracy_agreement_with_fp32"] = round(
            float((batch_accuracy(int8, dyn64)[1] == batch_accuracy(teacher, dyn64)[1]).float().mean()), 4)
    rows.append(infer_row("inference 3-layer student, max 64", shallow_student(teacher), dyn64))
    out["strategies"] = rows
    return out


def format_benchmark(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`benchmark_strategies`' result (the JSON holds the same numbers)."""
    lines = [f"hardware: {result['hardware']}",
             "peak matmul: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result["peak_gflops"].items())]
    if "headline" in result:
        h = result["headline"]
        lines.append(f"headline ({result['train_limit']} training / {result['eval_limit']} test examples):")
        lines.append(f"  {'recipe':12s} {'test acc':>8s} {'train s':>8s} {'ex/s':>7s} {'tok/s':>8s} {'MFU':>6s}")
        for name in ("usual", "lightweight"):
            r = h[name]
            lines.append(f"  {name:12s} {r['test_accuracy']:8.3f} {r['train_seconds']:8.1f} {r['examples_per_s']:7.1f} "
                         f"{r['tokens_per_s']:8.0f} {r['mfu']:6.1%}")
        lines.append(f"  speed-up {h['speedup']:.1f}x, accuracy difference {h['accuracy_gap_points']:+.1f} points")
    lines.append(f"  {'strategy':36s} {'mode':9s} {'prec':4s} {'ex/s':>7s} {'tok/s':>8s} {'mem MiB':>8s} {'MFU':>6s}")
    for r in result["strategies"]:
        mfu = f"{r['mfu']:6.1%}" if r["mfu"] is not None else "     -"
        lines.append(f"  {r['strategy']:36s} {r['mode']:9s} {r['precision']:4s} {r['examples_per_s']:7.1f} "
                     f"{r['tokens_per_s']:8.0f} {r['memory_increase_mib']:8.1f} {mfu}")
    return "\n".join(lines)
