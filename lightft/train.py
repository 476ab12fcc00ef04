"""Fine-tuning an encoder for text classification with the Hugging Face ``Trainer``.

Chapter: "The fine-tuning project" (and every chapter that trains: strategies, evaluation,
applications).

``finetune(model, data, ...)`` tokenizes, trains with evaluation after each epoch, keeps the best
checkpoint (safetensors), evaluates it on the test split and returns a :class:`FinetuneResult` with the
metrics, the loss/metric history, wall time, examples/s, tokens/s, peak memory and the hardware.
``predict(model_dir, texts)`` loads a saved model and returns labels and probabilities.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["FinetuneResult", "Prediction", "finetune", "predict", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PADDINGS = ("dynamic", "max_length")
BEST = "best"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str = "auto", device: str | None = None) -> tuple[str, str]:
    """Choose the training precision and say why.

    Returns ``(name, reason)`` with ``name`` one of ``"fp32"``, ``"bf16"`` (autocast), ``"fp16"``
    (autocast with loss scaling). ``"auto"`` picks bf16 on a GPU or CPU that supports it, fp16 with loss
    scaling on an older GPU, fp32 otherwise. ``"fp16"`` on a CPU is refused: fp16 needs a loss scaler
    to keep small gradients from underflowing, a GPU technique; CPUs have no fast fp16 matmul either.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        bf16 = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return ("bf16", "this GPU supports bfloat16") if bf16 else (
                "fp16", "this GPU lacks bfloat16: float16 autocast with loss scaling")
        if precision == "bf16" and not bf16:
            raise ValueError("precision='bf16' was asked for, but this GPU does not support bfloat16; use 'fp16' or 'fp32'")
        return precision, f"asked for {precision}"
    flags = _cpu_flags()
    cpu_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    if precision == "fp16":
        raise ValueError(
            "precision='fp16' is refused on a CPU: float16 training needs loss scaling (a GPU technique) and "
            "CPUs have no fast float16 matrix multiply; use 'bf16' (same memory saving, no scaler) or 'fp32'"
        )
    if precision == "auto":
        if cpu_bf16:
            return "bf16", "this CPU has native bfloat16 instructions (avx512_bf16/amx_bf16): bf16 autocast"
        return "fp32", "this CPU has no native bfloat16 instructions: fp32"
    return precision, f"asked for {precision}"


@dataclass
class FinetuneResult:
    """What :func:`finetune` measured. Sizes in bytes, times in seconds."""

    metrics: dict[str, float]
    validation_metrics: dict[str, float]
    history: list[dict[str, Any]]
    train_seconds: float
    examples_per_second: float
    tokens_per_second: float
    peak_memory_bytes: int
    precision: str
    precision_reason: str
    hardware: str
    steps: int
    epochs: float
    best_epoch: float | None
    output_dir: str
    model: nn.Module | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly part (everything but the model)."""
        out = asdict(self)  # noqa: deep copies history, fine at this size
        out.pop("model", None)
        return out


def _peak_rss_sampler():
    import psutil

    process = psutil.Process()
    peak = [process.memory_info().rss]

    def sample() -> int:
        peak[0] = max(peak[0], process.memory_info().rss)
        return peak[0]

    return sample


def _tokenize(data, tokenizer, max_length: int, padding: str):
    def encode(batch):
        return tokenizer(
            batch["text"],
            truncation=True,
            max_length=max_length,
            padding="max_length" if padding == "max_length" else False,
        )

    # Naming the result ourselves spares datasets from hashing the tokenizer (pickling it: ~2 s a call on
    # a 2-core CPU); the name still changes with the data, the tokenizer and every setting used here.
    import hashlib

    key = repr((data._fingerprint, type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer),
                sorted(map(str, tokenizer.init_kwargs.items())), max_length, padding))
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
    return data.map(encode, batched=True, remove_columns=["text"], desc="tokenizing", new_fingerprint=fingerprint)


def _check_free_space(out: Path, model: nn.Module, existing_checkpoints: int = 0, keep: int = 2) -> None:
    """Refuse to start when the disk holding ``out`` cannot take the checkpoints the run will write.

    Each checkpoint holds the weights plus AdamW's two fp32 moments per trainable parameter; the
    ``Trainer`` keeps ``keep`` of them and writes the next one before it deletes the oldest; ``best/``
    holds the weights once more. Failing here, before training, beats failing at the first save.
    """
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    optimizer = sum(2 * 4 * p.numel() for p in model.parameters() if p.requires_grad)
    needed = max(1, keep + 1 - existing_checkpoints) * (weights + optimizer) + weights
    anchor = out
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    free = shutil.disk_usage(anchor).free
    if free < needed:
        error = OSError(f"not enough free disk space for output_dir {out}: the checkpoints need about "
                        f"{needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free on that disk")
        error.errno = 28  # ENOSPC, what the disk itself would say at the first checkpoint
        raise error


def _make_writable_folder(out: Path) -> None:
    """Create ``out`` (and missing parents) and prove it is writable with a probe file; on failure
    remove what was created and raise ``PermissionError`` naming the folder."""
    top = out
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    created = not top.exists()
    probe = out / ".lightft-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        if created:
            shutil.rmtree(top, ignore_errors=True)
        raise PermissionError(f"output_dir {out} is not writable ({err.strerror or err})") from None


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _checkpointing_argument(enabled: bool) -> dict:
    """TrainingArguments' name for activation recomputation: transformers 5.2x renamed
    ``gradient_checkpointing`` to ``activation_checkpointing`` (the old name warns); older releases
    only know the old name."""
    from transformers import TrainingArguments

    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: enabled}


def finetune(
    model: nn.Module | str,
    data,
    *,
    tokenizer=None,
    max_length: int = 128,
    batch_size: int = 16,
    epochs: float = 2,
    learning_rate: float = 5e-5,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
    precision: str = "auto",
    padding: str = "dynamic",
    gradient_accumulation_steps: int = 1,
    seed: int = 0,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int | None = None,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    quiet: bool = False,
    callbacks: Sequence = (),
    gradient_checkpointing: bool = False,
    compute_loss_func=None,
) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` and evaluate the best checkpoint on the test split.

    Args:
        model: a sequence-classification model, or a name for :func:`lightft.load_model`.
        data: a ``DatasetDict`` with train/validation/test and text/label, or a name/path for
            :func:`lightft.load_dataset`.
        tokenizer: defaults to the tokenizer of ``model`` (its ``name_or_path``).
        max_length: longest sequence in tokens; longer texts are truncated.
        padding: ``"dynamic"`` pads each batch to its longest text (``DataCollatorWithPadding``);
            ``"max_length"`` pads every text to ``max_length`` (the usual, slower recipe).
        epochs: passes over the training split (may be fractional).
        warmup: linear warm-up, as a fraction of all steps (< 1) or a number of steps (>= 1).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (GPU only); see
            :func:`resolve_precision`.
        seed: seeds the head, the data order and dropout; same seed, same machine: same metrics.
        output_dir: where checkpoints and the best model (``output_dir/best``) go; a temporary folder
            when omitted. An existing non-empty folder is refused unless ``overwrite`` or ``resume``.
        resume: continue from the newest checkpoint in ``output_dir`` (after an interruption).
        checkpoint_every: save a checkpoint every this many optimizer steps (default: twice an epoch).
        train_limit, eval_limit: use only the first N training / validation+test examples (a budget).
        quiet: no progress bars or logs.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        gradient_checkpointing: recompute activations in the backward pass instead of storing them
            (less memory, more time; see the strategies chapter).
        compute_loss_func: a custom loss ``f(outputs, labels, num_items_in_batch) -> loss`` passed to
            the ``Trainer`` (e.g. a class-weighted cross-entropy); the model's own loss when ``None``.
    """
    import tempfile

    import transformers
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from lightft.data import load_dataset
    from lightft.environment import hardware_summary
    from lightft.evaluation import classification_metrics
    from lightft.models import load_model, load_tokenizer

    max_length = _check_int("max_length", max_length)
    batch_size = _check_int("batch_size", batch_size)
    gradient_accumulation_steps = _check_int("gradient_accumulation_steps", gradient_accumulation_steps)
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not epochs > 0:
        raise ValueError(f"epochs must be a positive number, got {epochs!r}")
    if not isinstance(learning_rate, (int, float)) or not 0 < learning_rate < 1:
        raise ValueError(f"learning_rate must be a number in (0, 1), got {learning_rate!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}; got {padding!r}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 (a fraction < 1 or a number of steps), got {warmup!r}")
    precision_name, precision_reason = resolve_precision(precision)

    if isinstance(data, (str, os.PathLike)):
        data = load_dataset(data, seed=seed)
    for split in ("train", "validation", "test"):
        if split not in data:
            raise ValueError(f"data must have train, validation and test splits; it has {list(data)}")
        if not {"text", "label"} <= set(data[split].column_names):
            raise ValueError(f"data[{split!r}] needs columns text and label; has {data[split].column_names}")
        if len(data[split]) == 0:
            raise ValueError(f"data[{split!r}] is empty")
    label_names = data["train"].features["label"].names if hasattr(data["train"].features["label"], "names") else None
    for split in ("train", "validation", "test"):
        values = np.asarray(data[split]["label"])
        if values.dtype.kind not in "iu":
            raise TypeError(f"data[{split!r}] labels must be integers 0..K-1, got dtype {values.dtype}")
    num_labels = len(label_names) if label_names else int(max(data["train"]["label"]) + 1)
    for split in ("train", "validation", "test"):
        values = np.asarray(data[split]["label"])
        if values.min() < 0 or values.max() >= num_labels:
            bad = int(values[(values < 0) | (values >= num_labels)][0])
            raise ValueError(
                f"data[{split!r}] has label {bad}, out of range: labels must be 0..{num_labels - 1} "
                f"({num_labels} classes, from the training split)"
            )

    if isinstance(model, (str, os.PathLike)):
        if tokenizer is None:
            tokenizer = load_tokenizer(model)
        model = load_model(model, labels=label_names, seed=seed) if label_names else load_model(model, num_labels, seed=seed)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a model name, got {type(model).__name__}")
    head = getattr(model.config, "num_labels", None)
    if head is not None and head != num_labels:
        raise ValueError(f"the model's head has {head} classes but the data has {num_labels}")
    if tokenizer is None:
        tokenizer = load_tokenizer(model.config._name_or_path or "minilm-l6")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's limit of {limit} positions")

    if output_dir is None:
        output_dir = tempfile.mkdtemp(prefix="lightft-")
    out = Path(output_dir)
    checkpoints = sorted(out.glob("checkpoint-*")) if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise FileExistsError(
                f"output_dir {out} exists and is not empty; pass overwrite=True to replace it or resume=True to continue"
            )
    if out.is_dir() and resume:  # a link inside output_dir must not lead writes outside it
        root = out.resolve()
        for entry in out.rglob("*"):
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                raise ValueError(f"output_dir {out} holds a link {entry} that points outside it; remove it")
    _check_free_space(out, model, existing_checkpoints=len(checkpoints))
    if out.is_dir() and any(out.iterdir()) and not resume:
        shutil.rmtree(out)
    _make_writable_folder(out)

    train = data["train"].select(range(min(train_limit, len(data["train"])))) if train_limit else data["train"]
    validation = data["validation"].select(range(min(eval_limit, len(data["validation"])))) if eval_limit else data["validation"]
    test = data["test"].select(range(min(eval_limit, len(data["test"])))) if eval_limit else data["test"]
    import datasets as hf_datasets

    from transformers.utils import logging as hf_logging

    bars = hf_datasets.is_progress_bar_enabled()
    if quiet:
        hf_datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()  # "Writing model shards" bars of save_pretrained
    try:
        encoded = {name: _tokenize(ds, tokenizer, max_length, padding) for name, ds in
                   (("train", train), ("validation", validation), ("test", test))}
    finally:
        if quiet and bars:
            hf_datasets.enable_progress_bars()
    train_tokens = int(sum(int(np.sum(m)) for m in encoded["train"]["attention_mask"]))
    padded_tokens = int(sum(len(m) for m in encoded["train"]["attention_mask"]))

    steps_per_epoch = math.ceil(len(train) / (batch_size * gradient_accumulation_steps))
    save_steps = checkpoint_every or max(1, steps_per_epoch // 2)

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(prediction.label_ids, np.argmax(logits, axis=-1), num_labels=num_labels)

    sample_rss = _peak_rss_sampler()
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()

    class _Measure(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sample_rss()

    class _KeepBest(TrainerCallback):
        """Save the model to output_dir/best whenever validation accuracy improves (safetensors)."""

        # Written into a side folder and renamed into place, so that a run killed mid-save (SIGKILL,
        # power loss) leaves either the old best or the new one, never half of one.
        def __init__(self):
            target, partial, old = out / BEST, out / ".best-partial", out / ".best-old"
            if not (target / "best.json").exists():
                for candidate in (partial, old):  # killed between the two renames below
                    if (candidate / "best.json").exists():
                        shutil.rmtree(target, ignore_errors=True)
                        candidate.rename(target)
                        break
            for leftover in (partial, old):
                shutil.rmtree(leftover, ignore_errors=True)
            record = target / "best.json"
            self.best = json.loads(record.read_text())["eval_accuracy"] if record.exists() else -1.0

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            accuracy = (metrics or {}).get("eval_accuracy")
            if accuracy is not None and accuracy > self.best:
                self.best = accuracy
                target, partial, old = out / BEST, out / ".best-partial", out / ".best-old"
                shutil.rmtree(partial, ignore_errors=True)
                kwargs["model"].save_pretrained(partial, safe_serialization=True)
                tokenizer.save_pretrained(partial)
                (partial / "best.json").write_text(json.dumps({**metrics, "epoch": state.epoch, "step": state.global_step}))
                if target.exists():
                    target.rename(old)
                partial.rename(target)
                shutil.rmtree(old, ignore_errors=True)

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(batch_size, 32),
        gradient_accumulation_steps=gradient_accumulation_steps,
        num_train_epochs=float(epochs),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
        warmup_steps=float(warmup) if warmup < 1 else int(warmup),
        eval_strategy="epoch",
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 4),
        bf16=precision_name == "bf16",
        fp16=precision_name == "fp16",
        seed=seed,
        data_seed=seed,
        report_to="none",
        disable_tqdm=quiet,
        log_level="error" if quiet else "passive",
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        **_checkpointing_argument(bool(gradient_checkpointing)),
    )
    collator = DataCollatorWithPadding(tokenizer) if padding == "dynamic" else transformers.default_data_collator
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=[_Measure(), _KeepBest(), *callbacks],
        compute_loss_func=compute_loss_func,
    )
    if quiet:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    else:
        print(f"precision: {precision_name} ({precision_reason})")
    # A checkpoint is complete once trainer_state.json, written last, is there; a run killed while
    # saving leaves a newer, incomplete one, which is removed so that the run resumes from the last
    # complete checkpoint.
    def _step(path: Path) -> int:
        return int(path.name.rsplit("-", 1)[1]) if path.name.rsplit("-", 1)[1].isdigit() else -1

    def _complete(path: Path) -> bool:  # SIGKILL during the write can leave a truncated trainer_state.json
        try:
            json.loads((path / "trainer_state.json").read_text())
            return True
        except (OSError, ValueError):
            return False

    complete = [c for c in checkpoints if _step(c) >= 0 and _complete(c)]
    resume_from = max(complete, key=_step) if resume and complete else None
    if resume_from is not None:
        for c in checkpoints:
            if _step(c) > _step(resume_from) and c not in complete:
                shutil.rmtree(c)
    if resume and resume_from is None and not quiet:
        print(f"resume=True but {out} has no complete checkpoint: starting from scratch")
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.perf_counter() - start

    best_record = out / BEST / "best.json"
    best_epoch = None
    if best_record.exists():
        from safetensors.torch import load_file

        adapter = out / BEST / "adapter_model.safetensors"
        if not (out / BEST / "model.safetensors").exists() and adapter.exists():  # a peft (e.g. LoRA) model
            from peft import set_peft_model_state_dict  # saves only its adapter and head

            result = set_peft_model_state_dict(model, load_file(adapter))
            if result.unexpected_keys:
                raise RuntimeError(f"best adapter does not match the model: unexpected {result.unexpected_keys}")
        else:
            state = load_file(out / BEST / "model.safetensors")
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or [m for m in missing if "position_ids" not in m]:
                raise RuntimeError(f"best checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
        best_epoch = json.loads(best_record.read_text()).get("epoch")
    validation_metrics = trainer.evaluate(encoded["validation"], metric_key_prefix="validation")
    test_metrics = trainer.evaluate(encoded["test"], metric_key_prefix="test")
    peak = torch.cuda.max_memory_allocated() if on_gpu else sample_rss()
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)  # drop the Trainer's bf16/fp16 autocast
    # wrapper from model.forward: the returned model runs in the precision its caller chooses
    epochs_run = float(output.metrics.get("epoch", epochs))
    if quiet and bars:
        hf_logging.enable_progress_bar()
    result = FinetuneResult(
        metrics={k.removeprefix("test_"): v for k, v in test_metrics.items()
                 if k.removeprefix("test_") in {"accuracy", "f1", "precision", "recall", "macro_f1", "weighted_f1", "loss"}},
        validation_metrics={k.removeprefix("validation_"): v for k, v in validation_metrics.items()
                            if not k.endswith(("runtime", "per_second"))},
        history=list(trainer.state.log_history),
        train_seconds=train_seconds,
        examples_per_second=len(train) * epochs_run / train_seconds,
        tokens_per_second=train_tokens * epochs_run / train_seconds,
        peak_memory_bytes=int(peak),
        precision=precision_name,
        precision_reason=precision_reason,
        hardware=hardware_summary(),
        steps=int(trainer.state.global_step),
        epochs=epochs_run,
        best_epoch=best_epoch,
        output_dir=str(out),
        model=model,
    )
    (out / BEST).mkdir(exist_ok=True)
    summary = result.summary()
    summary["padding_efficiency"] = train_tokens / max(padded_tokens, 1) if padding == "max_length" else 1.0
    (out / "result.json").write_text(json.dumps(summary, indent=1, default=str))
    return result


@dataclass
class Prediction:
    """Labels (names when the model has them), class indices and class probabilities, shape (n, k)."""

    labels: list[str]
    indices: list[int]
    probabilities: np.ndarray


def predict(model_dir: str | os.PathLike, texts: Sequence[str] | str, *, batch_size: int = 32,
            max_length: int = 128) -> Prediction:
    """Classify ``texts`` with a model saved by :func:`finetune` (its ``output_dir`` or ``best`` folder)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a string or a list of strings")
    if len(texts) == 0:
        raise ValueError("texts is empty; pass at least one string")
    batch_size = _check_int("batch_size", batch_size)
    folder = Path(model_dir)
    if (folder / BEST / "config.json").exists():
        folder = folder / BEST
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: no saved model here (expected config.json or {BEST}/config.json)")
    from lightft.models import quiet_transformers, check_weights_folder

    check_weights_folder(folder)  # safetensors only, header intact

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, trust_remote_code=False
        ).eval()
    probabilities = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i:i + batch_size]), truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt")
            probabilities.append(torch.softmax(model(**batch).logits.float(), dim=-1).numpy())
    probs = np.concatenate(probabilities)
    indices = probs.argmax(axis=-1).tolist()
    id2label = model.config.id2label or {}
    return Prediction([str(id2label.get(i, i)) for i in indices], indices, probs)
