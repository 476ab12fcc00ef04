"""Cross-validation: how much does a score move when the data are split differently?

Chapter: "Evaluation" (cross-validation, and its exercise). Each fold is scored with :mod:`lightft.metrics`, which
also holds the significance tests and calibration of that chapter."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from lightft import checks, timing
from lightft.metrics import METRICS, as_labels, classification_metrics
from lightft.train import finetune, predict
# book/evaluation.md and book/faq.md call these as lightft.evaluation.X; they live in lightft.metrics.
from lightft.metrics import (BootstrapResult, CalibrationResult, McNemarResult, calibration,  # noqa: F401
                             confusion_matrix, expected_calibration_error, mcnemar, paired_bootstrap,
                             plot_confusion_matrix, plot_reliability)


@dataclass
class CrossValidationResult:
    """Per-fold metrics of a stratified k-fold run, and their mean and (sample) standard deviation."""
    folds: list[dict[str, Any]]       # one dict per fold: fold, seed, n_train, n_test, seconds, metrics
    mean: dict[str, float]
    std: dict[str, float]
    seed: int
    k: int
    predictions: np.ndarray = field(repr=False)   # out-of-fold predicted class, shape (n,)

    def table(self) -> pd.DataFrame:
        """The folds as a DataFrame, one row per fold."""
        return pd.DataFrame(self.folds)

    def summary(self, metric: str = "accuracy") -> str:
        return f"{metric} {self.mean[metric]:.3f} ± {self.std[metric]:.3f} over {self.k} folds (seed {self.seed})"


def cross_validate(model: str | Callable, texts: Sequence[str], labels: Sequence[int], *, folds: int = 5,
                   seed: int = 0, validation_fraction: float = 0.1, label_names: Sequence[str] | None = None,
                   **finetune_kwargs) -> CrossValidationResult:
    """Stratified k-fold cross-validation of a fine-tune, or of any ``fit_predict`` function.

    ``sklearn.model_selection.StratifiedKFold`` (shuffled with ``seed``) splits the examples into
    ``folds`` parts with the same class proportions; each part is scored by a model trained on the
    other parts, so every example is scored once, by a model that never saw it.

    ``model``: a model name or folder for :func:`lightft.finetune` (a fresh fine-tune per fold, seeded with
    ``seed``, keeping its best epoch on ``validation_fraction`` of the training part), or ``fit_predict(train_texts,
    train_labels, test_texts) -> class indices`` (e.g. a baseline). ``texts``, ``labels``: the examples, shape
    ``(n,)``; each class needs at least ``folds`` of them. ``label_names``: class names (default ``"0"``, ``"1"``,
    ...). ``finetune_kwargs`` go to :func:`lightft.finetune` (``epochs``, ``max_length``, ``batch_size``, ``quiet``
    ...)."""
    folds = checks.integer("folds", folds, minimum=2)
    texts, y, names = _check_examples(texts, labels, folds, label_names)
    checks.instance("model", model, (str, Callable), "a model name/folder (str) or a function fit_predict(...)")
    if not callable(model):
        checks.number("validation_fraction", validation_fraction, 0, 0.5)
        if clash := sorted({"output_dir", "train_limit", "eval_limit", "seed"} & set(finetune_kwargs)):
            raise ValueError(f"cross_validate sets {', '.join(clash)} itself; do not pass it")
    fit = model if callable(model) else partial(_finetune_fold, model, names=names, seed=seed,
                                                validation_fraction=validation_fraction, kwargs=finetune_kwargs)
    out_of_fold, rows = np.full(y.size, -1, dtype=np.int64), []
    for fold, (train, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(texts, y)):
        output = []   # filled by the one timed call
        seconds = timing.time_calls(lambda: output.append(fit([texts[i] for i in train], y[train],
                                                              [texts[i] for i in test])), repeats=1, warmup=0)[0]
        if (predicted := as_labels(output[0], "fit_predict's output")).size != test.size:
            raise ValueError(f"fit_predict returned {predicted.size} predictions for {test.size} texts")
        out_of_fold[test] = predicted
        rows.append({"fold": fold, "seed": seed, "n_train": int(train.size), "n_test": int(test.size),
                     "seconds": seconds, **classification_metrics(y[test], predicted, len(names))})
    mean = {key: float(np.mean([r[key] for r in rows])) for key in METRICS}
    std = {key: float(np.std([r[key] for r in rows], ddof=1)) for key in METRICS}
    return CrossValidationResult(rows, mean, std, seed, folds, out_of_fold)


def _check_examples(texts, labels, folds: int, label_names) -> tuple[list[str], np.ndarray, list[str]]:
    """``(texts, y, names)`` once every class has at least ``folds`` examples and a name."""
    texts, y = checks.texts("texts", texts), as_labels(labels, "labels")
    if len(texts) != y.size:
        raise ValueError(f"texts ({len(texts)}) and labels ({y.size}) differ in length")
    present = np.bincount(y)[np.unique(y)]
    if present.size < 2:
        raise ValueError("labels hold a single class; cross-validation needs at least two")
    if present.min() < folds:
        raise ValueError(f"the rarest class has {present.min()} examples; each class needs at least folds={folds}")
    names = [str(n) for n in label_names] if label_names is not None else [str(i) for i in range(y.max() + 1)]
    if y.max() >= len(names):
        raise ValueError(f"class index {y.max()} is unknown: label_names has {len(names)} names")
    return texts, y, names


def _finetune_fold(model: str, train_texts: list[str], train_labels: np.ndarray, test_texts: list[str], *,
                   names: list[str], seed: int, validation_fraction: float, kwargs: dict) -> np.ndarray:
    """Fine-tune on one fold's training part; predicted classes of its held-out part, shape ``(n_test,)``."""
    import datasets
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    part = datasets.Dataset.from_dict({"text": train_texts, "label": train_labels.tolist()}, features=features)
    split = part.train_test_split(test_size=validation_fraction, stratify_by_column="label", seed=seed)
    # The held-out fold never enters the fine-tune: its "test" split is the validation part again,
    # and the fold is scored afterwards, with the saved best model.
    data = datasets.DatasetDict(train=split["train"], validation=split["test"], test=split["test"])
    with tempfile.TemporaryDirectory(prefix="lightft-cv-", ignore_cleanup_errors=True) as scratch:
        result = finetune(model, data, seed=seed, output_dir=scratch, overwrite=True, **kwargs)
        predicted = predict(result.output_dir, test_texts, max_length=kwargs.get("max_length", 128))
        return np.asarray(predicted.indices, dtype=np.int64)
