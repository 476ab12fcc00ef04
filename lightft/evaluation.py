"""How good is a model, and how sure are we: metrics, cross-validation, significance, calibration.

Chapters: "The fine-tuning project" (metrics each epoch) and "Evaluation" (everything else); the FAQ
links here.

* :func:`classification_metrics` accuracy, precision, recall, F1 (binary, macro, weighted), from
  scikit-learn; :func:`confusion_matrix` and :func:`plot_confusion_matrix`.
* :func:`cross_validate` stratified k-fold fine-tuning (or any ``fit_predict`` function) on a budget.
* :func:`paired_bootstrap` a confidence interval for the difference between two models on the same
  test set; :func:`mcnemar` McNemar's test (exact binomial for small counts).
* :func:`calibration` / :func:`expected_calibration_error` / :func:`plot_reliability` do the predicted
  probabilities mean what they say?

Everything takes plain sequences of class indices (``labels``, ``predictions``: shape ``(n,)``) and
class probabilities (shape ``(n, k)``), so it works the same for a fine-tuned model and a baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "BootstrapResult",
    "CalibrationResult",
    "CrossValidationResult",
    "McNemarResult",
    "calibration",
    "classification_metrics",
    "confusion_matrix",
    "cross_validate",
    "expected_calibration_error",
    "mcnemar",
    "paired_bootstrap",
    "plot_confusion_matrix",
    "plot_reliability",
]


# --------------------------------------------------------------------------- input checks

def _as_labels(values, name: str) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of integer class indices, got a string")
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array


def _check_pair(labels, predictions, num_labels: int | None = None,
                names: tuple[str, str] = ("labels", "predictions")) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated ``(y_true, y_pred, k)``: equal non-zero lengths, indices in ``0 .. k-1``."""
    y_true = _as_labels(labels, names[0])
    y_pred = _as_labels(predictions, names[1])
    if y_true.size == 0 or y_pred.size == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty; need at least one example")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{names[0]} ({y_true.size}) and {names[1]} ({y_pred.size}) differ in length")
    if min(y_true.min(), y_pred.min()) < 0:
        raise ValueError("class indices must be non-negative")
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer))
                                   or num_labels < 1):
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    k = int(num_labels) if num_labels is not None else int(max(y_true.max(), y_pred.max()) + 1)
    largest = int(max(y_true.max(), y_pred.max()))
    if largest >= k:
        raise ValueError(f"class index {largest} is unknown: with num_labels={k} the accepted values are 0..{k - 1}")
    return y_true, y_pred, k


def _as_probabilities(probabilities, n: int | None = None) -> np.ndarray:
    """Shape ``(n, k)`` class probabilities; a 1-D input is read as P(class 1) of a binary task."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (n, k) with k >= 2 (or (n,) for P(class 1)), got {p.shape}")
    if p.shape[0] == 0:
        raise ValueError("probabilities are empty; need at least one example")
    if n is not None and p.shape[0] != n:
        raise ValueError(f"probabilities have {p.shape[0]} rows but labels have {n}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must be finite numbers in [0, 1]")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("each row of probabilities must sum to 1 (apply a softmax to logits first)")
    return p


# --------------------------------------------------------------------------- metrics

def classification_metrics(
    labels: Sequence[int], predictions: Sequence[int], num_labels: int | None = None
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of ``predictions`` against ``labels``.

    With two classes ``precision``/``recall``/``f1`` are those of class 1 (the positive class);
    with more, they are macro averages. ``macro_f1`` (unweighted mean of the per-class F1) and
    ``weighted_f1`` (weighted by each class's share of ``labels``) are always included.

    Args:
        labels, predictions: 1-D sequences of class indices of equal, non-zero length, shape ``(n,)``.
        num_labels: number of classes; inferred from the values when omitted.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y_true, y_pred, k = _check_pair(labels, predictions, num_labels)
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


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_labels: int | None = None,
                     normalize: str | None = None) -> np.ndarray:
    """The confusion matrix, shape ``(k, k)``: row = true class, column = predicted class.

    ``normalize``: ``None`` (counts), ``"true"`` (each row sums to 1: recall on the diagonal),
    ``"pred"`` (each column sums to 1: precision on the diagonal) or ``"all"``.
    """
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all'; got {normalize!r}")
    y_true, y_pred, k = _check_pair(labels, predictions, num_labels)
    return sk_confusion_matrix(y_true, y_pred, labels=list(range(max(k, 2))), normalize=normalize)


def plot_confusion_matrix(labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str] | None = None,
                          *, normalize: str | None = None, ax=None, title: str | None = None):
    """Draw the confusion matrix (rows true, columns predicted) and return the matplotlib ``Axes``."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    k = len(label_names) if label_names is not None else None
    matrix = confusion_matrix(labels, predictions, num_labels=k, normalize=normalize)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2 + 0.5 * len(matrix), 2.8 + 0.5 * len(matrix)))
    display = ConfusionMatrixDisplay(matrix, display_labels=list(label_names) if label_names is not None else None)
    display.plot(ax=ax, cmap="Blues", colorbar=False, values_format=".2f" if normalize else "d")
    ax.set(xlabel="predicted", ylabel="true")
    if title:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- comparing two models

@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap of ``metric(a) - metric(b)`` on the same test examples."""

    metric: str
    difference: float          # observed metric(a) - metric(b)
    low: float                 # lower end of the confidence interval
    high: float                # upper end
    confidence: float
    resamples: int
    seed: int
    a: float                   # observed metric of model a
    b: float                   # observed metric of model b
    a_interval: tuple[float, float]   # percentile interval for metric(a) alone
    b_interval: tuple[float, float]
    pvalue: float              # two-sided bootstrap p-value for "no difference"
    distribution: np.ndarray = field(repr=False)   # shape (resamples,)

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0


_BOOTSTRAP_METRICS = ("accuracy", "f1", "macro_f1", "weighted_f1", "precision", "recall")


def _metric_fn(metric: str, k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    if metric not in _BOOTSTRAP_METRICS:
        raise ValueError(f"metric must be one of {', '.join(_BOOTSTRAP_METRICS)}; got {metric!r}")
    if metric == "accuracy":
        return lambda t, p: float(np.mean(t == p))
    from sklearn.metrics import f1_score, precision_score, recall_score

    classes = list(range(max(k, 2)))
    binary = len(classes) == 2
    if metric in ("macro_f1", "weighted_f1"):
        average = metric.split("_")[0]
        return lambda t, p: float(f1_score(t, p, labels=classes, average=average, zero_division=0))
    fn = {"f1": f1_score, "precision": precision_score, "recall": recall_score}[metric]
    if binary:
        return lambda t, p: float(fn(t, p, pos_label=1, average="binary", zero_division=0))
    return lambda t, p: float(fn(t, p, labels=classes, average="macro", zero_division=0))


def paired_bootstrap(labels: Sequence[int], predictions_a: Sequence[int], predictions_b: Sequence[int], *,
                     metric: str = "accuracy", resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0, num_labels: int | None = None) -> BootstrapResult:
    """Confidence interval for ``metric(a) - metric(b)``, both models judged on the same examples.

    Draws ``resamples`` test sets of size ``n`` with replacement (the *same* indices for both models,
    which is what makes it paired), computes the difference on each, and reports the percentile
    interval. The p-value is twice the share of resampled differences on the far side of zero
    (at most 1). ``metric`` is one of accuracy, f1, macro_f1, weighted_f1, precision, recall.

    Args:
        labels, predictions_a, predictions_b: class indices, each of shape ``(n,)``.
    """
    y, a, k = _check_pair(labels, predictions_a, num_labels, ("labels", "predictions_a"))
    _, b, k_b = _check_pair(labels, predictions_b, num_labels, ("labels", "predictions_b"))
    k = max(k, k_b)
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 100:
        raise ValueError(f"resamples must be an integer >= 100, got {resamples!r}")
    if not isinstance(confidence, float) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a float in (0, 1), e.g. 0.95; got {confidence!r}")
    score = _metric_fn(metric, k)
    rng = np.random.default_rng(seed)
    n = y.size
    index = rng.integers(0, n, size=(int(resamples), n))          # shape (resamples, n)
    if metric == "accuracy":                                       # vectorised: same numbers, faster
        correct_a, correct_b = (a == y).astype(np.float64), (b == y).astype(np.float64)
        sa, sb = correct_a[index].mean(axis=1), correct_b[index].mean(axis=1)
    else:
        sa = np.array([score(y[i], a[i]) for i in index])
        sb = np.array([score(y[i], b[i]) for i in index])
    diff = sa - sb
    tail = (1 - confidence) / 2
    q = lambda x: (float(np.quantile(x, tail)), float(np.quantile(x, 1 - tail)))  # noqa: E731
    low, high = q(diff)
    observed = score(y, a) - score(y, b)
    pvalue = min(1.0, 2 * min(float(np.mean(diff <= 0)), float(np.mean(diff >= 0))))
    return BootstrapResult(metric, float(observed), low, high, confidence, int(resamples), seed,
                           score(y, a), score(y, b), q(sa), q(sb), pvalue, diff)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on the examples where exactly one of two models is right."""

    only_a_correct: int        # b in the usual notation: a right, b wrong
    only_b_correct: int        # c: a wrong, b right
    statistic: float           # exact: min(b, c); chi-square: (|b - c| - 1)^2 / (b + c)
    pvalue: float
    exact: bool
    table: np.ndarray = field(repr=False)   # 2x2: rows a right/wrong, columns b right/wrong

    @property
    def discordant(self) -> int:
        return self.only_a_correct + self.only_b_correct


def mcnemar(labels: Sequence[int], predictions_a: Sequence[int], predictions_b: Sequence[int], *,
            exact: bool | None = None) -> McNemarResult:
    """McNemar's test: are models a and b equally accurate on these examples?

    Only the discordant examples count: ``b`` where a is right and b wrong, ``c`` the reverse. Under
    the null hypothesis each discordant example is a fair coin, so ``b ~ Binomial(b + c, 1/2)``.
    ``exact=True`` uses that binomial distribution (two-sided, ``scipy.stats.binomtest``);
    ``exact=False`` the chi-square approximation with continuity correction,
    ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom. ``None`` (default) is exact when
    ``b + c < 25``, where the approximation is poor. With no discordant example the p-value is 1.
    """
    from scipy.stats import binomtest, chi2

    y, a, _ = _check_pair(labels, predictions_a, None, ("labels", "predictions_a"))
    _, b, _ = _check_pair(labels, predictions_b, None, ("labels", "predictions_b"))
    right_a, right_b = a == y, b == y
    table = np.array([[np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
                      [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)]], dtype=np.int64)
    only_a, only_b = int(table[0, 1]), int(table[1, 0])
    n = only_a + only_b
    if exact is None:
        exact = n < 25
    if n == 0:
        return McNemarResult(only_a, only_b, 0.0, 1.0, bool(exact), table)
    if exact:
        pvalue = float(binomtest(only_a, n, 0.5).pvalue)
        statistic = float(min(only_a, only_b))
    else:
        statistic = (abs(only_a - only_b) - 1) ** 2 / n
        pvalue = float(chi2.sf(statistic, df=1))
    return McNemarResult(only_a, only_b, float(statistic), min(1.0, pvalue), bool(exact), table)


# --------------------------------------------------------------------------- calibration

@dataclass(frozen=True)
class CalibrationResult:
    """Reliability of the top-class probability, in equal-width confidence bins."""

    bin_edges: np.ndarray      # shape (bins + 1,), 0 .. 1 (or 1/k .. 1)
    confidence: np.ndarray     # mean top-class probability per bin, NaN where the bin is empty
    accuracy: np.ndarray       # share correct per bin, NaN where empty
    counts: np.ndarray         # examples per bin
    ece: float                 # expected calibration error
    mean_confidence: float
    accuracy_overall: float


def calibration(labels: Sequence[int], probabilities, bins: int = 10) -> CalibrationResult:
    """Bin the examples by the probability of their predicted class and compare with accuracy.

    ECE (expected calibration error) is ``sum_b (n_b / n) * |accuracy_b - confidence_b|`` over the
    ``bins`` equal-width bins of ``[0, 1]``; a bin holds confidences in ``(lo, hi]`` (the first also
    ``0``). A perfectly calibrated model has ECE 0: of the answers given with 80 % confidence, 80 %
    are right.

    Args:
        labels: class indices, shape ``(n,)``.
        probabilities: shape ``(n, k)``, rows summing to 1; or shape ``(n,)`` = P(class 1), binary.
    """
    y = _as_labels(labels, "labels")
    if y.size == 0:
        raise ValueError("labels are empty; need at least one example")
    p = _as_probabilities(probabilities, y.size)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be class indices 0..{p.shape[1] - 1} (probabilities have {p.shape[1]} columns)")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, int(bins) - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        acc = np.bincount(which, weights=correct, minlength=bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / y.size * np.abs(acc[filled] - conf[filled])))
    return CalibrationResult(edges, conf, acc, counts, ece, float(confidence.mean()), float(correct.mean()))


def expected_calibration_error(labels: Sequence[int], probabilities, bins: int = 10) -> float:
    """ECE of the top-class probability with ``bins`` equal-width bins; see :func:`calibration`."""
    return calibration(labels, probabilities, bins).ece


def plot_reliability(labels: Sequence[int], probabilities, bins: int = 10, *, ax=None, label: str | None = None,
                     show_counts: bool = True):
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal of perfect
    calibration; returns the matplotlib ``Axes``. Call it twice on one ``ax`` to compare models."""
    import matplotlib.pyplot as plt

    result = calibration(labels, probabilities, bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4))
    filled = result.counts > 0
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    name = f"{label + ': ' if label else ''}ECE {result.ece:.3f}"
    ax.plot(result.confidence[filled], result.accuracy[filled], "o-", label=name)
    if show_counts:
        for x, y, n in zip(result.confidence[filled], result.accuracy[filled], result.counts[filled]):
            ax.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
    ax.set(xlabel="confidence (probability of the predicted class)", ylabel="accuracy in the bin",
           xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(loc="upper left", fontsize=8)
    return ax


# --------------------------------------------------------------------------- cross-validation

@dataclass
class CrossValidationResult:
    """Per-fold metrics of a stratified k-fold run, and their mean and (sample) standard deviation."""

    folds: list[dict[str, Any]]       # one dict per fold: fold, seed, n_train, n_test, seconds, metrics
    mean: dict[str, float]
    std: dict[str, float]
    seed: int
    k: int
    predictions: np.ndarray = field(repr=False)   # out-of-fold predicted class, shape (n,)

    def table(self) -> "pandas.DataFrame":  # noqa: F821
        """The folds as a DataFrame, one row per fold."""
        import pandas as pd

        return pd.DataFrame(self.folds)

    def summary(self, metric: str = "accuracy") -> str:
        return f"{metric} {self.mean[metric]:.3f} ± {self.std[metric]:.3f} over {self.k} folds (seed {self.seed})"


_METRIC_KEYS = ("accuracy", "f1", "precision", "recall", "macro_f1", "weighted_f1")


def cross_validate(
    model: str | Callable[[list[str], np.ndarray, list[str]], Sequence[int]],
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    folds: int = 5,
    seed: int = 0,
    validation_fraction: float = 0.1,
    label_names: Sequence[str] | None = None,
    **finetune_kwargs,
) -> CrossValidationResult:
    """Stratified k-fold cross-validation of a fine-tune (or of any ``fit_predict`` function).

    The examples are split into ``folds`` parts with the same class proportions
    (``sklearn.model_selection.StratifiedKFold``, shuffled with ``seed``). For each fold, the model is
    trained on the other parts and scored on that one, so every example is scored exactly once by a
    model that never saw it.

    Args:
        model: a model name or folder for :func:`lightft.finetune` (a fresh copy is loaded and
            fine-tuned for every fold, seeded with ``seed``; ``validation_fraction`` of each training
            part is held out as the validation split the fine-tune uses to keep its best epoch); or a
            function ``fit_predict(train_texts, train_labels, test_texts) -> predicted class indices``
            (e.g. a baseline).
        texts, labels: the examples, shape ``(n,)``; every class needs at least ``folds`` examples.
        folds: number of folds ``k`` (>= 2).
        seed: shuffles the fold assignment and seeds each fine-tune; reported in the result.
        label_names: class names (default: ``"0"``, ``"1"``, ...).
        finetune_kwargs: passed to :func:`lightft.finetune` (``epochs``, ``max_length``,
            ``batch_size``, ``precision``, ``quiet`` ...).
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a sequence of strings")
    y = _as_labels(labels, "labels")
    if len(texts) != y.size:
        raise ValueError(f"texts ({len(texts)}) and labels ({y.size}) differ in length")
    if y.size == 0:
        raise ValueError("texts and labels are empty; need examples to cross-validate")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    if y.min() < 0:
        raise ValueError("class indices must be non-negative")
    counts = np.bincount(y)
    present = counts[counts > 0]
    if present.size < 2:
        raise ValueError("labels hold a single class; cross-validation needs at least two")
    if present.min() < folds:
        raise ValueError(f"the rarest class has {present.min()} examples; each class needs at least folds={folds}")
    k_classes = len(label_names) if label_names is not None else int(y.max()) + 1
    if y.max() >= k_classes:
        raise ValueError(f"class index {y.max()} is unknown: label_names has {k_classes} names")
    names = [str(n) for n in label_names] if label_names is not None else [str(i) for i in range(k_classes)]
    if not callable(model) and not isinstance(model, str):
        raise TypeError("model must be a model name/folder (str) or a function fit_predict(train_texts, train_labels, test_texts)")
    if not callable(model) and not 0 < validation_fraction < 0.5:
        raise ValueError(f"validation_fraction must be in (0, 0.5), got {validation_fraction!r}")

    texts = list(texts)
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    out_of_fold = np.full(y.size, -1, dtype=np.int64)
    rows = []
    for fold, (train_index, test_index) in enumerate(splitter.split(np.zeros(y.size), y)):
        train_texts = [texts[i] for i in train_index]
        test_texts = [texts[i] for i in test_index]
        start = time.perf_counter()
        if callable(model):
            predicted = _as_labels(model(train_texts, y[train_index], test_texts), "fit_predict's output")
            if predicted.shape != test_index.shape:
                raise ValueError(f"fit_predict returned {predicted.size} predictions for {test_index.size} texts")
        else:
            predicted = _finetune_fold(model, train_texts, y[train_index], test_texts, names,
                                       seed, validation_fraction, finetune_kwargs, train_test_split)
        seconds = time.perf_counter() - start
        out_of_fold[test_index] = predicted
        metrics = classification_metrics(y[test_index], predicted, num_labels=k_classes)
        rows.append({"fold": fold, "seed": seed, "n_train": int(train_index.size), "n_test": int(test_index.size),
                     "seconds": seconds, **metrics})
    mean = {key: float(np.mean([r[key] for r in rows])) for key in _METRIC_KEYS}
    std = {key: float(np.std([r[key] for r in rows], ddof=1)) for key in _METRIC_KEYS}
    return CrossValidationResult(rows, mean, std, seed, int(folds), out_of_fold)


def _finetune_fold(model, train_texts, train_labels, test_texts, names, seed,
                   validation_fraction, finetune_kwargs, train_test_split) -> np.ndarray:
    import shutil
    import tempfile

    import datasets

    from lightft.train import finetune, predict

    for key in ("output_dir", "train_limit", "eval_limit", "seed"):
        if key in finetune_kwargs:
            raise ValueError(f"cross_validate sets {key} itself; do not pass it")
    fit_texts, val_texts, fit_labels, val_labels = train_test_split(
        train_texts, train_labels, test_size=validation_fraction, stratify=train_labels, random_state=seed)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})

    def part(t, l):
        return datasets.Dataset.from_dict({"text": list(t), "label": [int(v) for v in l]}, features=features)

    validation = part(val_texts, val_labels)
    # The held-out fold never enters the fine-tune: its "test" split is the validation part again,
    # and the fold is scored afterwards, with the saved best model.
    data = datasets.DatasetDict(train=part(fit_texts, fit_labels), validation=validation, test=validation)
    scratch = tempfile.mkdtemp(prefix="lightft-cv-")
    try:
        result = finetune(model, data, seed=seed, output_dir=scratch, overwrite=True, **finetune_kwargs)
        max_length = finetune_kwargs.get("max_length", 128)
        return np.asarray(predict(result.output_dir, test_texts, max_length=max_length).indices, dtype=np.int64)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
