"""Lightweight fine-tuning strategies, each a short function a reader can call.

Chapter: "Lightweight strategies, measured" (``benchmarks/strategies.py`` reruns its measurements): which
parameters train (:func:`freeze_encoder`, :func:`bitfit`, :func:`apply_lora`), memory for time
(:func:`enable_gradient_checkpointing`, :func:`accumulate_gradients`), int8 inference
(:func:`quantize_int8`) and distillation into a shallower student (:func:`distill`)."""

from __future__ import annotations

import copy
import importlib.util
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightft import checks
from lightft.models import quiet_transformers

#: The source article's listing: every text padded to 128 tokens, fp32, batch 16, 3 epochs, the Trainer's
#: default lr 5e-5 (10 % warm-up instead of the listing's 500 steps, which a small budget would never finish).
USUAL_RECIPE: dict[str, Any] = dict(max_length=128, padding="max_length", precision="fp32", batch_size=16,
                                    epochs=3, learning_rate=5e-5)
#: What the strategies chapter recommends for the same model and data: dynamic padding, at most 64 tokens,
#: batches grouped by length, frozen word embeddings, low-precision autocast where the hardware has it
#: ("auto": bf16 on a CPU or GPU with bf16, fp16 with a scaler on an older GPU, else fp32), a larger
#: learning rate for small budgets; the same batch and epochs.
LIGHTWEIGHT_RECIPE: dict[str, Any] = dict(max_length=64, padding="dynamic", group_by_length=True,
                                          freeze_embeddings=True, precision="auto", batch_size=16,
                                          epochs=3, learning_rate=1e-4)

#: Parameter-name parts of the task head (BERT and DistilBERT classifiers), always kept trainable.
HEAD = ("classifier", "pooler", "pre_classifier")
_MODULE = (nn.Module, "a torch.nn.Module")  # what checks.instance accepts for a model
_NO_ORT_ADVICE = lambda record: "pre-processing before quantization" not in record.getMessage()  # a logging filter


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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(quantiz|deprecat).*")
        return torch.ao.quantization.quantize_dynamic(_cpu_copy(model), {nn.Linear}, dtype=torch.qint8)


def _cpu_copy(model: nn.Module) -> nn.Module:
    from accelerate.utils import extract_model_from_parallel as unwrap  # the autocast wrapper a Trainer may leave
    return unwrap(copy.deepcopy(checks.instance("model", model, *_MODULE)).cpu().eval(), keep_fp32_wrapper=False)


def _require(*packages: str) -> None:
    if missing := [name for name in packages if importlib.util.find_spec(name) is None]:
        raise ModuleNotFoundError(f"{', '.join(missing)} not installed: pip install {' '.join(missing)}")


def export_onnx(model: nn.Module, path: str | Path, *, max_length: int = 128, quantize: bool = False) -> Path:
    """Write a classifier to a ``.onnx`` file for :class:`OnnxClassifier` (``torch.onnx.export(dynamo=True)``):
    ``logits (batch, classes)`` of ``input_ids``, ``attention_mask`` ``(batch, seq <= max_length)``; quantize: int8."""
    _require("onnx", "onnxscript", "onnxruntime")
    if (path := Path(path)).suffix != ".onnx" or not path.parent.is_dir():
        raise ValueError(f"path must name a .onnx file in an existing folder, got {str(path)!r}")
    example = dict(input_ids=torch.ones(2, 8, dtype=torch.long), attention_mask=torch.tensor([[1] * 8, [1] * 7 + [0]]))
    sequence = torch.export.Dim("sequence", max=checks.integer("max_length", max_length, 8))
    dims, net = dict.fromkeys(example, {0: torch.export.Dim("batch"), 1: sequence}), _cpu_copy(model)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(LeafSpec|axis name).*")  # the exporter's own notes
        program = torch.onnx.export(net, (), kwargs=example, input_names=list(example), output_names=["logits"],
                                    dynamo=True, dynamic_shapes=dims, verbose=False)
    if not quantize:
        return program.save(path, external_data=False) or path
    from onnxruntime.quantization import quantize_dynamic  # int8 weights per tensor, activations per batch
    del (proto := program.model_proto).graph.value_info[:]  # the exporter's shape notes trip quantize_dynamic
    logging.getLogger().addFilter(_NO_ORT_ADVICE)  # its advice to pre-process (which fails on this graph)
    return quantize_dynamic(proto, path) or path


class OnnxClassifier(nn.Module):
    """An ONNX Runtime CPU session of an :func:`export_onnx` file, called like a torch classifier (``.logits``
    ``(batch, classes)``), so ``lightft.measure`` times and scores it unchanged; as many threads as torch."""

    def __init__(self, path: str | Path):
        super().__init__()
        _require("onnxruntime")
        import onnxruntime
        if (path := Path(path)).suffix != ".onnx" or not path.is_file():
            raise FileNotFoundError(f"expected an existing .onnx file (written by export_onnx), got {str(path)!r}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads as torch: a fair comparison
        self.path, self.session = path, onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.modeling_outputs import SequenceClassifierOutput
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        return SequenceClassifierOutput(logits=torch.from_numpy(self.session.run(["logits"], feeds)[0]))


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
