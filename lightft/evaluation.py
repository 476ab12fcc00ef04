"""Metrics computed from predictions, with scikit-learn (never re-implemented).

Chapters: "The fine-tuning project" (metrics each epoch) and "Evaluation".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["classification_metrics"]


def _as_labels(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array


def classification_metrics(
    labels: Sequence[int], predictions: Sequence[int], num_labels: int | None = None
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of ``predictions`` against ``labels``.

    With two classes ``precision``/``recall``/``f1`` are those of class 1 (the positive class);
    with more, they are macro averages. ``macro_f1`` and ``weighted_f1`` are always included.

    Args:
        labels, predictions: 1-D sequences of class indices of equal, non-zero length.
        num_labels: number of classes; inferred from the values when omitted.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y_true = _as_labels(labels, "labels")
    y_pred = _as_labels(predictions, "predictions")
    if y_true.size == 0:
        raise ValueError("labels and predictions are empty; need at least one example")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels ({y_true.size}) and predictions ({y_pred.size}) differ in length")
    if min(y_true.min(), y_pred.min()) < 0:
        raise ValueError("class indices must be non-negative")
    k = int(num_labels) if num_labels is not None else int(max(y_true.max(), y_pred.max()) + 1)
    if max(y_true.max(), y_pred.max()) >= k:
        raise ValueError(f"a class index is >= num_labels={k}")
    classes = list(range(max(k, 2)))
    average = "binary" if len(classes) == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes if average == "macro" else None, average=average, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)),
    }
