"""Fine-tuning an encoder for text classification with the Hugging Face ``Trainer``.

Chapter: "The fine-tuning project" (and every chapter that trains: strategies, evaluation,
applications).

``finetune(model, data, ...)`` is the chapter's corrected listing with three things added, all of
them the ``Trainer``'s own features: evaluation and a checkpoint after each epoch, the best epoch's
model kept (``load_best_model_at_end``) and a run that resumes after a crash
(``get_last_checkpoint``). It reads as five steps: inputs, model, output folder, arguments, result.
``predict(model_dir, texts)`` loads a saved model and returns labels and probabilities.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from lightft import checks

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PADDINGS = ("dynamic", "max_length")
BEST = "best"
METRICS = ("accuracy", "f1", "precision", "recall", "macro_f1", "weighted_f1", "loss")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next((set(line.split(":", 1)[1].split()) for line in handle if line.startswith("flags")), set())
    except OSError:
        return set()


def resolve_precision(precision: str = "auto", device: str | None = None) -> tuple[str, str]:
    """Choose the training precision and say why: ``(name, reason)``.

    ``"auto"`` picks bf16 autocast on a GPU or CPU with native bfloat16, fp16 autocast with loss scaling
    on an older GPU, fp32 otherwise. ``"fp16"`` on a CPU is refused: it needs a loss scaler (a GPU
    technique) and CPUs have no fast fp16 matmul.
    """
    checks.choice("precision", precision, PRECISIONS)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        bf16 = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return ("bf16", "this GPU supports bfloat16") if bf16 else (
                "fp16", "this GPU lacks bfloat16: float16 autocast with loss scaling")
        if precision == "bf16" and not bf16:
            raise ValueError("precision='bf16': this GPU does not support bfloat16; use 'fp16' or 'fp32'")
        return precision, f"asked for {precision}"
    if precision == "fp16":
        raise ValueError("precision='fp16' is refused on a CPU: float16 training needs loss scaling (a GPU "
                         "technique); use 'bf16' (same memory saving, no scaler) or 'fp32'")
    if precision == "auto":
        if _cpu_flags() & {"avx512_bf16", "amx_bf16"}:
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
    #: the class predicted for each test example, in the split's order (for paired tests: :func:`lightft.mcnemar`)
    test_predictions: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly part (everything but the model and the predictions)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("model", "test_predictions")}


# ---- step 1: inputs ---------------------------------------------------------------------------------

def _inputs(data, seed: int, train_limit: int | None, eval_limit: int | None):
    """The three splits (checked, cut to the budget) and the class names or count."""
    from datasets import DatasetDict

    from lightft.data import load_dataset

    if isinstance(data, (str, os.PathLike)):
        data = load_dataset(data, seed=seed)
    for split in ("train", "validation", "test"):
        if split not in data:
            raise ValueError(f"data must have train, validation and test splits; it has {list(data)}")
        if not {"text", "label"} <= set(data[split].column_names):
            raise ValueError(f"data[{split!r}] needs columns text and label; has {data[split].column_names}")
        if len(data[split]) == 0:
            raise ValueError(f"data[{split!r}] is empty")
        if np.asarray(data[split]["label"]).dtype.kind not in "iu":
            raise TypeError(f"data[{split!r}] labels must be integers 0..K-1")
    names = getattr(data["train"].features["label"], "names", None)
    k = len(names) if names else int(max(data["train"]["label"])) + 1
    for split in ("train", "validation", "test"):
        labels = np.asarray(data[split]["label"])
        bad = labels[(labels < 0) | (labels >= k)]
        if bad.size:
            raise ValueError(f"data[{split!r}] has label {int(bad[0])}, out of range: labels must be 0..{k - 1} "
                             f"({k} classes, from the training split)")
    limits = {"train": train_limit, "validation": eval_limit, "test": eval_limit}
    cut = {s: data[s].select(range(min(n, len(data[s])))) if n else data[s] for s, n in limits.items()}
    return DatasetDict(cut), names, k


def _tokenize(data, tokenizer, max_length: int, padding: str):
    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length,
                         padding="max_length" if padding == "max_length" else False)

    # Naming the result ourselves spares datasets from hashing the tokenizer (pickling it: ~2 s a call on a
    # 2-core CPU); the name still changes with the data, the tokenizer and every setting used here.
    key = repr((data._fingerprint, type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer),
                sorted(map(str, tokenizer.init_kwargs.items())), max_length, padding))
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
    return data.map(encode, batched=True, remove_columns=["text"], desc="tokenizing", new_fingerprint=fingerprint)


# ---- step 2: model ----------------------------------------------------------------------------------

def _model(model, tokenizer, names, k: int, seed: int, max_length: int):
    from lightft.models import load_model, load_tokenizer

    if isinstance(model, (str, os.PathLike)):
        tokenizer = tokenizer or load_tokenizer(model)
        model = load_model(model, labels=names, seed=seed) if names else load_model(model, k, seed=seed)
    checks.instance("model", model, nn.Module, "a torch.nn.Module or a model name")
    head = getattr(model.config, "num_labels", None)
    if head is not None and head != k:
        raise ValueError(f"the model's head has {head} classes but the data has {k}")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's limit of {limit} positions")
    return model, tokenizer or load_tokenizer(model.config._name_or_path or "minilm-l6")


# ---- step 3: the output folder: never overwrite by accident; resume from the last complete checkpoint -

def _output_folder(output_dir, overwrite: bool, resume: bool) -> Path:
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if not PartialState(cpu=not torch.cuda.is_available()).is_main_process:  # DDP: rank 0 prepares the folder
        return broadcast_object_list([None])[0]
    out = Path(output_dir if output_dir is not None else tempfile.mkdtemp(prefix="lightft-"))
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise FileExistsError(f"output_dir {out} exists and is not empty; pass overwrite=True to replace "
                                  "it or resume=True to continue")
        shutil.rmtree(out)
    if resume and out.is_dir():  # a link inside output_dir must not lead writes outside it
        root = out.resolve()
        for entry in out.rglob("*"):
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                raise ValueError(f"output_dir {out} holds a link {entry} that points outside it; remove it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".lightft-write-test").write_bytes(b"ok")
        (out / ".lightft-write-test").unlink()
    except OSError as err:
        raise PermissionError(f"output_dir {out} is not writable ({err.strerror or err})") from None
    return broadcast_object_list([out])[0]  # one temporary folder for all ranks, not one each


def _resume_point(out: Path) -> str | None:
    """The newest complete checkpoint (``get_last_checkpoint``), after removing newer ones that a kill
    left half-written (``trainer_state.json``, written last, missing or truncated)."""
    from transformers.trainer_utils import get_last_checkpoint

    while (last := get_last_checkpoint(str(out))) is not None:
        try:
            json.loads(Path(last, "trainer_state.json").read_text())
            return last
        except (OSError, ValueError):
            shutil.rmtree(last)
    return None


# ---- step 4: arguments ------------------------------------------------------------------------------

def _arguments(out: Path, precision: str, quiet: bool, checkpoint_every: int | None, **settings):
    from transformers import TrainingArguments

    every = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": checkpoint_every,
             "save_steps": checkpoint_every} if checkpoint_every else {"eval_strategy": "epoch", "save_strategy": "epoch"}
    return TrainingArguments(
        output_dir=str(out), **every, **settings,
        load_best_model_at_end=True, metric_for_best_model="accuracy", greater_is_better=True,
        save_total_limit=2,  # the newest checkpoint and the best one
        bf16=precision == "bf16", fp16=precision == "fp16", report_to="none", disable_tqdm=quiet,
        log_level="error" if quiet else "passive", dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        # DDP: a classifier's loss is a per-batch mean; the Trainer would multiply it by the number of ranks
        average_tokens_across_devices=False, ddp_find_unused_parameters=False)


def _disk_full(err: BaseException) -> bool:
    while err is not None:
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def finetune(model: nn.Module | str, data, *, tokenizer=None, max_length: int = 128, batch_size: int = 16,
             epochs: float = 2, learning_rate: float = 5e-5, weight_decay: float = 0.01, warmup: float = 0.1,
             precision: str = "auto", padding: str = "dynamic", group_by_length: bool = False,
             gradient_accumulation_steps: int = 1, seed: int = 0, output_dir: str | os.PathLike | None = None,
             overwrite: bool = False, resume: bool = False, checkpoint_every: int | None = None,
             train_limit: int | None = None, eval_limit: int | None = None, quiet: bool = False,
             callbacks: Sequence = (), gradient_checkpointing: bool = False, compute_loss_func=None,
             freeze_embeddings: bool = False) -> FinetuneResult:
    """Fine-tune ``model`` on ``data``, keep the best epoch, evaluate it on the test split.

    Args:
        model: a sequence-classification model, or a name for :func:`lightft.load_model`.
        data: a ``DatasetDict`` with train/validation/test and text/label, or a name/path for
            :func:`lightft.load_dataset`.
        tokenizer: defaults to the tokenizer of ``model``.
        max_length: longest sequence in tokens; longer texts are truncated.
        padding: ``"dynamic"`` pads each batch to its longest text (``DataCollatorWithPadding``);
            ``"max_length"`` pads every text to ``max_length`` (the usual, slower recipe).
        group_by_length: batch texts of similar length together (less padding; the ``Trainer``'s
            ``train_sampling_strategy="group_by_length"``).
        epochs: passes over the training split (may be fractional).
        warmup: linear warm-up, a fraction of all steps (< 1) or a number of steps (>= 1).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (GPU only); see :func:`resolve_precision`.
        seed: seeds the head, the data order and dropout; same seed, same machine: same metrics.
        output_dir: checkpoints and the best model (``output_dir/best``); a temporary folder when omitted.
            A non-empty folder is refused unless ``overwrite`` or ``resume``.
        resume: continue from the newest complete checkpoint in ``output_dir``.
        checkpoint_every: evaluate and save every this many optimizer steps (default: every epoch).
        train_limit, eval_limit: use only the first N training / validation+test examples (a budget).
        callbacks: extra ``transformers.TrainerCallback`` objects.
        gradient_checkpointing: recompute activations in the backward pass (less memory, more time).
        freeze_embeddings: do not train the word embeddings (a third to a half of a small encoder's
            weights, which AdamW would otherwise update densely every step).
        compute_loss_func: a custom loss ``f(outputs, labels, num_items_in_batch)`` for the ``Trainer``.
    """
    max_length, batch_size = checks.integer("max_length", max_length), checks.integer("batch_size", batch_size)
    accumulation = checks.integer("gradient_accumulation_steps", gradient_accumulation_steps)
    checks.number("epochs", epochs, 0, None)
    checks.number("learning_rate", learning_rate, 0, 1)
    checks.number("warmup", warmup, 0, None, inclusive=True)
    checks.choice("padding", padding, PADDINGS)
    if checkpoint_every is not None:
        checks.integer("checkpoint_every", checkpoint_every)
    precision_name, precision_reason = resolve_precision(precision)
    data, names, k = _inputs(data, seed, train_limit, eval_limit)
    model, tokenizer = _model(model, tokenizer, names, k, seed, max_length)
    if freeze_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    out = _output_folder(output_dir, overwrite, resume)
    with _quiet_progress(quiet):
        encoded = {split: _tokenize(part, tokenizer, max_length, padding) for split, part in data.items()}
    steps_per_epoch = math.ceil(len(data["train"]) / (batch_size * accumulation))
    args = _arguments(
        out, precision_name, quiet, checkpoint_every, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(batch_size, 32), gradient_accumulation_steps=accumulation,
        num_train_epochs=float(epochs), learning_rate=float(learning_rate), weight_decay=float(weight_decay),
        warmup_steps=float(warmup) if warmup < 1 else int(warmup),
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        logging_strategy="steps", logging_steps=max(1, steps_per_epoch // 4), seed=seed, data_seed=seed,
        activation_checkpointing=bool(gradient_checkpointing))  # transformers 5.2x's name for it
    trainer = _trainer(model, args, encoded, tokenizer, padding, k, callbacks, compute_loss_func, quiet)
    if not quiet and trainer.is_world_process_zero():
        print(f"precision: {precision_name} ({precision_reason})")
    with _quiet_progress(quiet):  # no "Writing model shards" bars either
        return _train_and_report(trainer, model, encoded, out, resume, quiet, precision_name, precision_reason)


@contextlib.contextmanager
def _quiet_progress(quiet: bool):
    """No datasets/transformers progress bars inside the block when ``quiet``."""
    import datasets
    from transformers.utils import logging

    bars = datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and bars:
            datasets.enable_progress_bars()
            logging.enable_progress_bar()


def _trainer(model, args, encoded, tokenizer, padding: str, k: int, callbacks, compute_loss_func, quiet: bool):
    from transformers import DataCollatorWithPadding, Trainer, default_data_collator

    from lightft.metrics import classification_metrics

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(prediction.label_ids, np.argmax(logits, axis=-1), num_labels=k)

    trainer = Trainer(
        model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded["validation"],
        processing_class=tokenizer, compute_metrics=compute_metrics, callbacks=list(callbacks),
        data_collator=DataCollatorWithPadding(tokenizer) if padding == "dynamic" else default_data_collator,
        compute_loss_func=compute_loss_func)
    if quiet:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return trainer


# ---- step 5: train, then the result -----------------------------------------------------------------

def _train_and_report(trainer, model, encoded, out: Path, resume: bool, quiet: bool, precision: str,
                      reason: str) -> FinetuneResult:
    from accelerate.utils import extract_model_from_parallel

    from lightft.environment import hardware_summary
    from lightft.timing import PeakMemory

    with trainer.args.main_process_first():  # rank 0 removes half-written checkpoints before the others look
        start = _resume_point(out) if resume else None
    if resume and start is None and not quiet and trainer.is_world_process_zero():
        print(f"resume=True but {out} has no complete checkpoint: starting from scratch")
    try:
        with PeakMemory() as memory:
            output = trainer.train(resume_from_checkpoint=start)  # ends by loading the best epoch's weights
            validation = trainer.evaluate(encoded["validation"], metric_key_prefix="validation")
            tested = trainer.predict(encoded["test"], metric_key_prefix="test")   # metrics and predictions
    except Exception as err:
        if _disk_full(err):
            raise OSError(errno.ENOSPC, f"no space left on the disk holding output_dir {out}: free some space "
                          "or choose another folder, then run again with resume=True") from err
        raise
    extract_model_from_parallel(model, keep_fp32_wrapper=False)  # drop the Trainer's autocast wrapper
    state = trainer.state
    best = next((h for h in state.log_history if h.get("step") == state.best_global_step and "eval_accuracy" in h), None)
    trainer.save_model(str(out / BEST))  # safetensors, with the tokenizer
    if best and trainer.is_world_process_zero():  # under DDP only rank 0 writes files
        (out / BEST / "best.json").write_text(json.dumps(best))
    epochs = float(output.metrics.get("epoch", state.epoch or 0))
    seconds = output.metrics["train_runtime"]
    train = encoded["train"]
    tokens = sum(map(sum, train["attention_mask"]))
    result = FinetuneResult(
        metrics={k.removeprefix("test_"): v for k, v in tested.metrics.items() if k.removeprefix("test_") in METRICS},
        validation_metrics={k.removeprefix("validation_"): v for k, v in validation.items()
                            if not k.endswith(("runtime", "per_second"))},
        history=list(state.log_history), train_seconds=seconds,
        examples_per_second=len(train) * epochs / seconds, tokens_per_second=tokens * epochs / seconds,
        peak_memory_bytes=int(memory.peak), precision=precision, precision_reason=reason,
        hardware=hardware_summary(), steps=int(state.global_step), epochs=epochs,
        best_epoch=best["epoch"] if best else None, output_dir=str(out), model=model,
        test_predictions=_in_dataset_order(trainer, encoded["test"], tested))
    padded = sum(map(len, train["attention_mask"]))
    summary = {**result.summary(), "padding_efficiency": tokens / max(padded, 1)}
    if trainer.is_world_process_zero():
        (out / "result.json").write_text(json.dumps(summary, indent=1, default=str))
    return result


def _in_dataset_order(trainer, dataset, tested) -> np.ndarray | None:
    """Test predictions in ``dataset``'s order: with length grouping, transformers 5 evaluates in a seeded
    ``LengthGroupedSampler`` order too, which its sampler undoes. None if the labels do not line up then."""
    logits = tested.predictions[0] if isinstance(tested.predictions, tuple) else tested.predictions
    sampler = trainer._get_eval_sampler(dataset)
    order = np.arange(len(dataset)) if sampler is None else np.fromiter(iter(sampler), dtype=np.int64)
    predictions, labels = np.empty(len(dataset), dtype=np.int64), np.full(len(dataset), -1)
    if len(order) == len(logits) == len(dataset):
        predictions[order], labels[order] = np.argmax(logits, axis=-1), tested.label_ids
    aligned = np.array_equal(labels, dataset["labels" if "labels" in dataset.column_names else "label"])
    return predictions if aligned else None


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

    from lightft.models import check_weights_folder, quiet_transformers

    texts = checks.texts("texts", texts)
    batch_size = checks.integer("batch_size", batch_size)
    folder = Path(model_dir)
    folder = folder / BEST if (folder / BEST / "config.json").exists() else folder
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: no saved model here (expected config.json or {BEST}/config.json)")
    check_weights_folder(folder)  # safetensors only, header intact
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, trust_remote_code=False).eval()
    probabilities = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt")
            probabilities.append(torch.softmax(model(**batch).logits.float(), dim=-1).numpy())
    probs = np.concatenate(probabilities)
    indices = probs.argmax(axis=-1).tolist()
    id2label = model.config.id2label or {}
    return Prediction([str(id2label.get(i, i)) for i in indices], indices, probs)
