"""Baselines a fine-tuned model must beat: the majority class, TF-IDF + logistic regression, and a
frozen encoder's sentence embeddings + logistic regression.

Chapter: "Evaluation" (the baselines table, the learning curve); the FAQ links there. Each returns classes ``(n,)``
and probabilities ``(n, k)`` for the test texts, scored by :mod:`lightft.metrics`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from lightft import checks, timing
from lightft.metrics import as_labels
from lightft.models import load_model, load_tokenizer
from lightft.retrieval import embed


@dataclass
class BaselineResult:
    """What a baseline predicted for the test texts."""
    name: str
    predictions: np.ndarray            # shape (n,), class indices
    probabilities: np.ndarray          # shape (n, k)
    seconds: float                     # fit + predict wall time (embeddings given or computed before)
    details: dict = field(default_factory=dict)


def _texts(name: str, values) -> list[str]:
    """A non-empty list of strings; a bare string is refused (it is one text, not a list of them)."""
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of strings, got one string")
    return checks.texts(name, values)


def _training_set(train_texts, train_labels) -> tuple[list[str], np.ndarray]:
    texts, y = _texts("train_texts", train_texts), as_labels(train_labels, "train_labels")
    if y.size != len(texts):
        raise ValueError(f"train_texts ({len(texts)}) and train_labels ({y.size}) differ in length")
    if np.unique(y).size < 2:
        raise ValueError("train_labels hold a single class; a classifier needs at least two")
    return texts, y


def _timed(name: str, probabilities: Callable[[], np.ndarray], details: dict) -> BaselineResult:
    """Time ``probabilities() -> (n, k)`` once; the prediction is the most probable class (ties: the smallest)."""
    out = []
    seconds = timing.time_calls(lambda: out.append(probabilities()), repeats=1, warmup=0)[0]
    return BaselineResult(name, out[0].argmax(axis=1), out[0], seconds, details)


def _fit_predict_proba(classifier, x_train, y: np.ndarray, x_test) -> np.ndarray:
    """Fit, then ``(n_test, max(y) + 1)`` probabilities: a class absent from ``y`` gets a column of 0."""
    classifier.fit(x_train, y)
    probabilities = np.zeros((len(x_test), int(y.max()) + 1))
    probabilities[:, classifier.classes_] = classifier.predict_proba(x_test)
    return probabilities


def majority_baseline(train_labels: Sequence[int], test_texts: Sequence[str] | int,
                      num_labels: int | None = None) -> BaselineResult:
    """Always the most frequent training class (ties: the smallest), with the training class shares as
    probabilities. ``test_texts``: the texts or their number. Its accuracy, that class's share of the
    test set, is the floor every model must clear (on imbalanced data a high one)."""
    if (y := as_labels(train_labels, "train_labels")).size == 0:
        raise ValueError("train_labels is empty")
    is_count = isinstance(test_texts, (int, np.integer))
    n = checks.integer("test_texts", test_texts) if is_count else len(_texts("test_texts", test_texts))
    k = int(y.max()) + 1 if num_labels is None else checks.integer("num_labels", num_labels, int(y.max()) + 1)
    shares = np.bincount(y, minlength=k) / y.size                        # (k,)
    return _timed("majority class", lambda: np.tile(shares, (n, 1)), {"class": int(np.argmax(shares))})


def tfidf_baseline(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str], *,
                   ngram_range: tuple[int, int] = (1, 2), min_df: int = 1, C: float = 4.0,
                   max_iter: int = 2000, class_weight: str | None = None) -> BaselineResult:
    """TF-IDF word n-grams + logistic regression, the classic strong text baseline: scikit-learn's
    ``TfidfVectorizer(ngram_range, min_df, sublinear_tf=True)`` then ``LogisticRegression(C)`` (lbfgs:
    deterministic). ``class_weight="balanced"`` weighs the loss by inverse class frequency."""
    texts, y = _training_set(train_texts, train_labels)
    test = _texts("test_texts", test_texts)
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=tuple(ngram_range), min_df=min_df, sublinear_tf=True),
                             LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight))
    result = _timed("TF-IDF + logistic regression", partial(_fit_predict_proba, pipeline, texts, y, test),
                    {"C": C, "ngram_range": ngram_range})
    result.details["vocabulary"] = len(pipeline[0].vocabulary_)
    return result


def encode_texts(model: nn.Module | str = "minilm-l6", texts: Sequence[str] = (), *, tokenizer=None,
                 pooling: str = "mean", max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings ``(n, hidden)`` float32 from a frozen encoder (an ``AutoModel``-style module
    returning ``last_hidden_state``, or a name for :func:`lightft.load_model`), without gradients.

    ``pooling="mean"``: the mean over real (non-padding) tokens (:func:`lightft.retrieval.mean_pool`), how
    all-MiniLM-L6-v2 was trained to be used; ``"cls"``: the first token's vector. Computed by
    :func:`lightft.retrieval.embed` without its L2 norm."""
    texts, pooling = _texts("texts", texts), checks.choice("pooling", pooling, ("mean", "cls"))
    if isinstance(model, (str, os.PathLike)):
        model, tokenizer = load_model(model, num_labels=None), tokenizer or load_tokenizer(model)
    encoder = getattr(checks.instance("model", model, nn.Module, "a torch.nn.Module or a model name"),
                      "base_model", model)
    tokenizer = load_tokenizer(model.config._name_or_path) if tokenizer is None else tokenizer
    return embed(encoder, tokenizer, texts, batch_size=batch_size, max_length=max_length, pooling=pooling,
                 normalize=False).numpy()


def embedding_baseline(train_texts: Sequence[str], train_labels: Sequence[int], test_texts: Sequence[str], *,
                       model: nn.Module | str = "minilm-l6", pooling: str = "mean", max_length: int = 128,
                       batch_size: int = 64, C: float = 1.0, max_iter: int = 2000,
                       train_embeddings: np.ndarray | None = None,
                       test_embeddings: np.ndarray | None = None) -> BaselineResult:
    """A frozen encoder's sentence embeddings (:func:`encode_texts`) + logistic regression: transfer
    without fine-tuning. ``train_embeddings`` ``(n_train, hidden)`` / ``test_embeddings``
    ``(n_test, hidden)`` reuse embeddings computed before, e.g. for a learning curve."""
    texts, y = _training_set(train_texts, train_labels)
    test, tokenizer = _texts("test_texts", test_texts), None
    if isinstance(model, (str, os.PathLike)) and (train_embeddings is None or test_embeddings is None):
        tokenizer, model = load_tokenizer(model), load_model(model, num_labels=None)   # loaded once for both
    encode = partial(encode_texts, model, tokenizer=tokenizer, pooling=pooling, max_length=max_length,
                     batch_size=batch_size)
    x_train = encode(texts) if train_embeddings is None else np.asarray(train_embeddings)
    x_test = encode(test) if test_embeddings is None else np.asarray(test_embeddings)
    if (len(x_train), len(x_test)) != (len(texts), len(test)):
        raise ValueError(f"embeddings have {len(x_train)} / {len(x_test)} rows for {len(texts)} / {len(test)} texts")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    return _timed("frozen encoder + logistic regression", partial(_fit_predict_proba, classifier, x_train, y, x_test),
                  {"hidden": int(x_train.shape[1]), "pooling": pooling})
