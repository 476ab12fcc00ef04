"""Sentiment analysis as a service-like step: score texts in batches, in fp32 or int8, and time it.

Chapter: "Applications", sentiment analysis. Not a ``transformers.pipeline``, which returns sorted label
dicts where the chapter's tables want ``(n, num_labels)`` probabilities."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from lightft import checks, timing
from lightft.models import check_weights_folder, quiet_transformers
from lightft.strategies import quantize_int8
from lightft.train import Prediction


def _plain_fp32(model: nn.Module) -> nn.Module:
    """The model as saved, in place: fp32 weights, the class's own ``forward``. A mixed-precision ``Trainer``
    leaves ``forward`` wrapped in autocast: scores would be 16-bit, and an int8 copy would fail on them."""
    for attribute in ("forward", "_original_forward", "_converted_to_transformer_engine"):
        vars(model).pop(attribute, None)
    return model.float()


class SentimentScorer:
    """A fine-tuned classifier (eval mode, plain fp32, in place) and its tokenizer: ``score(texts) -> Prediction``;
    texts are truncated to ``max_length`` tokens; ``precision`` (``"fp32"``/``"int8"``) labels reports."""

    def __init__(self, model: nn.Module, tokenizer, *, max_length: int = 128, batch_size: int = 32,
                 precision: str = "fp32") -> None:
        checks.instance("model", model, nn.Module, "a torch.nn.Module")
        checks.instance("tokenizer", tokenizer, Callable, "a Hugging Face tokenizer (callable on a list of strings)")
        self.model, self.tokenizer, self.precision = _plain_fp32(model).eval(), tokenizer, precision
        self.max_length = checks.integer("max_length", max_length)
        self.batch_size = checks.integer("batch_size", batch_size)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, **kwargs) -> "SentimentScorer":
        """Load a model saved by :func:`lightft.finetune` (its ``output_dir`` or ``best`` folder)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        folder = Path(model_dir)
        folder = check_weights_folder(folder / "best" if (folder / "best" / "config.json").exists() else folder)
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, trust_remote_code=False)
        return cls(model, tokenizer, **kwargs)

    @property
    def labels(self) -> list[str]:
        """Class names (the config's ``id2label``), in index order."""
        return [str(self.model.config.id2label.get(i, i)) for i in range(self.model.config.num_labels)]

    def quantized(self) -> "SentimentScorer":
        """An int8 copy, on the CPU: every ``nn.Linear`` dynamically quantized (:func:`quantize_int8`)."""
        return SentimentScorer(quantize_int8(self.model), self.tokenizer, max_length=self.max_length,
                               batch_size=self.batch_size, precision="int8")

    def score(self, texts: Sequence[str] | str) -> Prediction:
        """Labels, class indices and probabilities ``(n, num_labels)`` for ``texts``, ``batch_size`` at a time."""
        texts, logits = checks.texts("texts", texts), []
        device = next(self.model.parameters()).device  # a GPU model scores on the GPU
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[i:i + self.batch_size], truncation=True, max_length=self.max_length,
                                       padding=True, return_tensors="pt").to(device)
                logits.append(self.model(**batch).logits.float().cpu())
        probabilities = torch.softmax(torch.cat(logits), dim=-1).numpy()
        indices, names = probabilities.argmax(axis=-1).tolist(), self.labels
        return Prediction([names[i] for i in indices], indices, probabilities)

    __call__ = score


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's saved state (``state_dict``), quantized weights and their scales included."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@dataclass(frozen=True)
class ScoringSpeed:
    """What :func:`time_scoring` measured, with real texts (tokenization included)."""
    precision: str
    single_ms: float             # median latency of one request holding one sentence
    batch_examples_per_s: float  # texts per second when scoring many texts in batches
    batch_size: int
    threads: int

    def as_dict(self) -> dict[str, float | str | int]:
        return {"precision": self.precision, "one sentence (ms)": self.single_ms,
                "batch throughput (sentences/s)": self.batch_examples_per_s, "batch size": self.batch_size}


def time_scoring(scorer: SentimentScorer, texts: Sequence[str], *, single_repeats: int = 20,
                 batch_rounds: int = 1, warmup: int = 2) -> ScoringSpeed:
    """Time ``scorer`` as a service is used (tokenization included): the median latency of ``score([text])``
    over ``single_repeats`` different texts, and the best of ``batch_rounds`` rounds of ``score(texts)``."""
    checks.instance("scorer", scorer, SentimentScorer, "a SentimentScorer")
    texts = checks.texts("texts", texts)
    checks.integer("single_repeats", single_repeats)
    checks.integer("batch_rounds", batch_rounds)
    following = itertools.cycle(texts)
    single = timing.median_seconds(lambda: scorer.score([next(following)]), repeats=single_repeats, warmup=warmup)
    rounds = timing.time_calls(lambda: scorer.score(texts), repeats=batch_rounds, warmup=0)
    return ScoringSpeed(scorer.precision, 1000 * single, len(texts) / min(rounds), scorer.batch_size,
                        torch.get_num_threads())
