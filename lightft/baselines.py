"""Baselines a fine-tuned model must beat: the majority class, TF-IDF + logistic regression, and a
frozen encoder's sentence embeddings + logistic regression.

Chapter: "Evaluation" (the baselines table, the learning curve); the FAQ links there.

Each baseline is fitted on training texts and labels and returns a :class:`BaselineResult` holding
predicted class indices, shape ``(n,)``, and class probabilities, shape ``(n, k)``, for the test texts,
so it can be scored and compared with :mod:`lightft.evaluation` exactly like a fine-tuned model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "BaselineResult",
    "embedding_baseline",
    "encode_texts",
    "majority_baseline",
    "tfidf_baseline",
]


@dataclass
class BaselineResult:
    """What a baseline predicted for the test texts."""

    name: str
    predictions: np.ndarray            # shape (n,), class indices
    probabilities: np.ndarray          # shape (n, k)
    seconds: float                     # fit + predict wall time
    details: dict = field(default_factory=dict)


def _texts(values, name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) and not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of strings, not {type(values).__name__}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty; need at least one text")
    if not all(isinstance(t, str) for t in values):
        raise TypeError(f"{name} must hold strings only")
    return values


def _train(train_texts, train_labels) -> tuple[list[str], np.ndarray, int]:
    from lightft.evaluation import _as_labels

    texts = _texts(train_texts, "train_texts")
    y = _as_labels(train_labels, "train_labels")
    if y.size != len(texts):
        raise ValueError(f"train_texts ({len(texts)}) and train_labels ({y.size}) differ in length")
    if y.min() < 0:
        raise ValueError("class indices must be non-negative")
    if np.unique(y).size < 2:
        raise ValueError("train_labels hold a single class; a classifier needs at least two")
    return texts, y, int(y.max()) + 1


def _num_labels(y: np.ndarray, num_labels: int | None) -> int:
    k = int(y.max()) + 1 if num_labels is None else num_labels
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < int(y.max()) + 1:
        raise ValueError(f"num_labels must be an integer >= {int(y.max()) + 1} (the largest label + 1), got {num_labels!r}")
    return int(k)


def majority_baseline(train_labels: Sequence[int], test_texts: Sequence[str] | int,
                      num_labels: int | None = None) -> BaselineResult:
    """Always predict the most frequent training class (ties: the smallest index).

    Its probabilities are the training class shares, the same for every text. ``test_texts`` may be
    the texts or just their number. Its accuracy is the share of that class in the test set: the
    floor every model must clear, and on imbalanced data a high one.
    """
    from lightft.evaluation import _as_labels

    start = time.perf_counter()
    y = _as_labels(train_labels, "train_labels")
    if y.size == 0:
        raise ValueError("train_labels is empty")
    if y.min() < 0:
        raise ValueError("class indices must be non-negative")
    n = test_texts if isinstance(test_texts, (int, np.integer)) and not isinstance(test_texts, bool) else len(_texts(test_texts, "test_texts"))
    if n < 1:
        raise ValueError("need at least one test example")
    k = _num_labels(y, num_labels)
    shares = np.bincount(y, minlength=k) / y.size
    majority = int(np.argmax(shares))
    return BaselineResult("majority class", np.full(int(n), majority, dtype=np.int64),
                          np.tile(shares, (int(n), 1)), time.perf_counter() - start, {"class": majority})


def tfidf_baseline(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str], *,
                   ngram_range: tuple[int, int] = (1, 2), min_df: int = 1, C: float = 4.0,
                   max_iter: int = 2000, class_weight: str | None = None) -> BaselineResult:
    """TF-IDF word n-grams + logistic regression (scikit-learn), the classic strong text baseline.

    ``TfidfVectorizer(ngram_range, min_df, sublinear_tf=True)`` then ``LogisticRegression(C)``;
    deterministic (the lbfgs solver has no randomness). ``class_weight="balanced"`` reweights the
    loss by inverse class frequency (for imbalanced data).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    start = time.perf_counter()
    texts, y, _ = _train(train_texts, train_labels)
    test = _texts(test_texts, "test_texts")
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=tuple(ngram_range), min_df=min_df, sublinear_tf=True),
        LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight),
    )
    pipeline.fit(texts, y)
    probabilities = _full_probabilities(pipeline, pipeline.predict_proba(test), int(y.max()) + 1)
    vocabulary = len(pipeline[0].vocabulary_)
    return BaselineResult("TF-IDF + logistic regression", probabilities.argmax(axis=1), probabilities,
                          time.perf_counter() - start, {"vocabulary": vocabulary, "C": C, "ngram_range": ngram_range})


def _full_probabilities(classifier, probabilities: np.ndarray, k: int) -> np.ndarray:
    """Columns for every class 0..k-1 (a class absent from training gets probability 0)."""
    out = np.zeros((probabilities.shape[0], k))
    out[:, np.asarray(classifier.classes_, dtype=np.int64)] = probabilities
    return out


def encode_texts(model: nn.Module | str = "minilm-l6", texts: Sequence[str] = (), *, tokenizer=None,
                 pooling: str = "mean", max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings from a frozen encoder, shape ``(n, hidden)``, float32.

    ``pooling="mean"`` averages the last hidden state over the real (non-padding) tokens, which is how
    all-MiniLM-L6-v2 was trained to be used; ``"cls"`` takes the first token's vector. No gradient is
    computed and the model is not changed.

    Args:
        model: an encoder (``AutoModel``-style, returning ``last_hidden_state``) or a name for
            :func:`lightft.load_model` (loaded without a head).
    """
    from lightft.models import load_model, load_tokenizer

    texts = _texts(texts, "texts")
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
    if isinstance(model, (str, os.PathLike)):
        tokenizer = tokenizer or load_tokenizer(model)
        model = load_model(model, num_labels=None)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a model name, got {type(model).__name__}")
    if tokenizer is None:
        tokenizer = load_tokenizer(model.config._name_or_path)
    encoder = getattr(model, "base_model", model)
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length,
                                  padding=True, return_tensors="pt")
                hidden = encoder(**batch).last_hidden_state.float()          # (b, t, hidden)
                if pooling == "cls":
                    out.append(hidden[:, 0].numpy())
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).float()       # (b, t, 1)
                    out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())
    finally:
        encoder.train(was_training)
    return np.concatenate(out).astype(np.float32)


def embedding_baseline(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str], *,
                       model: nn.Module | str = "minilm-l6", pooling: str = "mean", max_length: int = 128,
                       batch_size: int = 64, C: float = 1.0, max_iter: int = 2000,
                       train_embeddings: np.ndarray | None = None,
                       test_embeddings: np.ndarray | None = None) -> BaselineResult:
    """A frozen encoder's sentence embeddings + logistic regression: transfer without fine-tuning.

    The encoder is used as a fixed feature extractor (:func:`encode_texts`); only a logistic regression
    on its ``hidden``-dimensional embeddings is trained. Pass ``train_embeddings`` /
    ``test_embeddings`` (shapes ``(n_train, hidden)``, ``(n_test, hidden)``) to reuse embeddings
    already computed, e.g. for a learning curve.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    texts, y, _ = _train(train_texts, train_labels)
    test = _texts(test_texts, "test_texts")
    if train_embeddings is None or test_embeddings is None:
        if isinstance(model, (str, os.PathLike)):
            from lightft.models import load_model, load_tokenizer

            tokenizer, model = load_tokenizer(model), load_model(model, num_labels=None)
        else:
            tokenizer = None
        if train_embeddings is None:
            train_embeddings = encode_texts(model, texts, tokenizer=tokenizer, pooling=pooling,
                                            max_length=max_length, batch_size=batch_size)
        if test_embeddings is None:
            test_embeddings = encode_texts(model, test, tokenizer=tokenizer, pooling=pooling,
                                           max_length=max_length, batch_size=batch_size)
    train_embeddings, test_embeddings = np.asarray(train_embeddings), np.asarray(test_embeddings)
    if train_embeddings.shape[0] != len(texts) or test_embeddings.shape[0] != len(test):
        raise ValueError(f"embeddings have {train_embeddings.shape[0]} / {test_embeddings.shape[0]} rows for "
                         f"{len(texts)} / {len(test)} texts")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    classifier.fit(train_embeddings, y)
    probabilities = _full_probabilities(classifier, classifier.predict_proba(test_embeddings), int(y.max()) + 1)
    return BaselineResult("frozen encoder + logistic regression", probabilities.argmax(axis=1), probabilities,
                          time.perf_counter() - start, {"hidden": int(train_embeddings.shape[1]), "pooling": pooling})
