"""Sentiment analysis as a service-like step: score a list of texts in batches, in fp32 or int8.

Chapter: "Applications" (``book/applications.md``), section on sentiment analysis.

:class:`SentimentScorer` holds a fine-tuned sequence classifier and its tokenizer and answers
``scorer.score(["a gripping film", ...])`` with labels and probabilities, batch by batch, under
``torch.inference_mode()``. :meth:`SentimentScorer.quantized` returns an int8 copy made with PyTorch's
*dynamic quantization*: the weights of every ``nn.Linear`` are stored as 8-bit integers with one
scale per tensor, the activations are quantized on the fly, batch by batch, and the matrix products
run in integer arithmetic (Jacob et al., 2018). :func:`time_scoring` measures what a service cares
about: the latency of one request of one sentence, and the throughput of large batches.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from lightft.train import Prediction

__all__ = ["ScoringSpeed", "SentimentScorer", "model_size_bytes", "time_scoring"]


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a string or a list of strings")
    if len(texts) == 0:
        raise ValueError("texts is empty; pass at least one string")
    return list(texts)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _plain_fp32(model: nn.Module) -> nn.Module:
    """The model as it is saved: float32 weights and the class's own ``forward``.

    A model that came out of a ``Trainer`` run with mixed precision still carries the ``forward`` that
    accelerate wrapped in ``torch.autocast`` (an instance attribute); scoring with it would silently run
    in bf16/fp16, and an int8 copy would fail on 16-bit activations. Both are undone, in place.
    """
    if "forward" in vars(model):
        del model.forward          # back to type(model).forward
    for attribute in ("_original_forward", "_converted_to_transformer_engine"):
        if attribute in vars(model):
            delattr(model, attribute)
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        model.float()
    return model


class SentimentScorer:
    """A fine-tuned classifier ready to score text: ``score(texts) -> Prediction``.

    Args:
        model: an ``AutoModelForSequenceClassification``, put in eval mode and, if a mixed-precision
            ``Trainer`` left it wrapped in autocast or in 16 bits, returned to plain float32 (in place).
        tokenizer: its tokenizer.
        max_length: longer texts are truncated to this many tokens.
        batch_size: texts per forward pass in :meth:`score`.
        precision: a label for reports, ``"fp32"`` or ``"int8"``.
    """

    def __init__(self, model: nn.Module, tokenizer, *, max_length: int = 128, batch_size: int = 32,
                 precision: str = "fp32") -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(tokenizer):
            raise TypeError("tokenizer must be a Hugging Face tokenizer (callable on a list of strings)")
        self.model = _plain_fp32(model).eval()
        self.tokenizer = tokenizer
        self.max_length = _check_positive("max_length", max_length)
        self.batch_size = _check_positive("batch_size", batch_size)
        self.precision = precision

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, **kwargs) -> "SentimentScorer":
        """Load a model saved by :func:`lightft.finetune` (its ``output_dir`` or ``best`` folder)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from lightft.models import quiet_transformers

        folder = Path(model_dir)
        if (folder / "best" / "config.json").exists():
            folder = folder / "best"
        if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
            raise FileNotFoundError(f"{model_dir}: no saved model (config.json and model.safetensors) here or in best/")
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, trust_remote_code=False)
        return cls(model, tokenizer, **kwargs)

    @property
    def labels(self) -> list[str]:
        """Class names from the model's config (``id2label``), in index order."""
        config = self.model.config
        return [str(config.id2label.get(i, i)) for i in range(config.num_labels)]

    def quantized(self) -> "SentimentScorer":
        """An int8 copy: every ``nn.Linear`` replaced by a dynamically quantized one (CPU only).

        The embeddings and LayerNorms stay in fp32; the original scorer is not changed.
        """
        from torch.ao.quantization import quantize_dynamic

        if next(self.model.parameters()).device.type != "cpu":
            raise ValueError("dynamic int8 quantization runs on the CPU; move the model to the CPU first")
        with warnings.catch_warnings():   # torch.ao.quantization is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            model = quantize_dynamic(copy.deepcopy(self.model), {nn.Linear}, dtype=torch.qint8)
        return SentimentScorer(model, self.tokenizer, max_length=self.max_length, batch_size=self.batch_size,
                               precision="int8")

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Raw scores ``(n, num_labels)`` for ``texts``, computed ``batch_size`` texts at a time."""
        texts = _check_texts(texts)
        out = []
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[i:i + self.batch_size], truncation=True, max_length=self.max_length,
                                       padding=True, return_tensors="pt")
                out.append(self.model(**batch).logits.float())
        return torch.cat(out)

    def score(self, texts: Sequence[str] | str) -> Prediction:
        """Labels, class indices and probabilities ``(n, num_labels)`` for ``texts``."""
        probabilities = torch.softmax(self.logits(texts), dim=-1).numpy()
        indices = probabilities.argmax(axis=-1).tolist()
        names = self.labels
        return Prediction([names[i] for i in indices], indices, probabilities)

    def __call__(self, texts: Sequence[str] | str) -> Prediction:
        return self.score(texts)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's saved state (``state_dict``), quantized weights and their scales included."""
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@dataclass(frozen=True)
class ScoringSpeed:
    """What :func:`time_scoring` measured, with real texts (tokenization included)."""

    precision: str
    single_ms: float           # median latency of one request holding one sentence
    batch_examples_per_s: float  # texts per second when scoring many texts in batches
    batch_size: int
    threads: int

    def as_dict(self) -> dict[str, float | str | int]:
        return {"precision": self.precision, "one sentence (ms)": self.single_ms,
                "batch throughput (sentences/s)": self.batch_examples_per_s, "batch size": self.batch_size}


def time_scoring(scorer: SentimentScorer, texts: Sequence[str], *, single_repeats: int = 20,
                 batch_rounds: int = 1, warmup: int = 2) -> ScoringSpeed:
    """Time ``scorer`` the way a service is used.

    * latency: ``scorer.score([text])`` for ``single_repeats`` different texts, one at a time; the
      median in milliseconds (tokenization included);
    * throughput: ``scorer.score(texts)`` over all ``texts`` (batches of ``scorer.batch_size``),
      ``batch_rounds`` times; the best round's texts per second.
    """
    if not isinstance(scorer, SentimentScorer):
        raise TypeError(f"scorer must be a SentimentScorer, got {type(scorer).__name__}")
    texts = _check_texts(texts)
    single_repeats = _check_positive("single_repeats", single_repeats)
    batch_rounds = _check_positive("batch_rounds", batch_rounds)
    for i in range(warmup):
        scorer.score(texts[i % len(texts)])
    singles = []
    for i in range(single_repeats):
        start = time.perf_counter()
        scorer.score([texts[i % len(texts)]])
        singles.append(time.perf_counter() - start)
    rounds = []
    for _ in range(batch_rounds):
        start = time.perf_counter()
        scorer.score(texts)
        rounds.append(time.perf_counter() - start)
    return ScoringSpeed(scorer.precision, 1000 * statistics.median(singles), len(texts) / min(rounds),
                        scorer.batch_size, torch.get_num_threads())
