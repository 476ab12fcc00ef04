"""Scores from predictions: metrics, comparing two models, calibration (scikit-learn and SciPy).

Chapters: "The fine-tuning project" (metrics each epoch) and "Evaluation" (the rest); the FAQ links here. Everything
takes class indices (``labels``, ``predictions``: shape ``(n,)``) and class probabilities (shape ``(n, k)``), so a
fine-tuned model and a baseline are scored the same way. Cross-validation, which trains, is
:func:`lightft.evaluation.cross_validate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import stats
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from lightft import checks

METRICS = ("accuracy", "f1", "precision", "recall", "macro_f1", "weighted_f1")


def as_labels(values, name: str = "labels") -> np.ndarray:
    """``values`` as class indices: a 1-D array of non-negative integers, shape ``(n,)``."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of integer class indices, got a string")
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array) & (array % 1 == 0))):
            raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name}: class indices must be non-negative")
    return array


def check_pair(labels, predictions, num_labels: int | None = None,
               names: tuple[str, str] = ("labels", "predictions")) -> tuple[np.ndarray, np.ndarray, int]:
    """``(y_true, y_pred, k)``: class indices of equal, non-zero length ``(n,)``, all in ``0 .. k-1``."""
    y_true, y_pred = as_labels(labels, names[0]), as_labels(predictions, names[1])
    if y_true.size == 0 or y_pred.size == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty; need at least one example")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{names[0]} ({y_true.size}) and {names[1]} ({y_pred.size}) differ in length")
    largest = int(max(y_true.max(), y_pred.max()))
    k = largest + 1 if num_labels is None else checks.integer("num_labels", num_labels)
    if largest >= k:
        raise ValueError(f"class index {largest} is unknown: with num_labels={k} the accepted values are 0..{k - 1}")
    return y_true, y_pred, k


def _scorer(metric: str, k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """``score(y_true, y_pred)`` for one of :data:`METRICS` (binary f1/precision/recall: class 1's)."""
    if metric == "accuracy":
        return lambda t, p: np.mean(t == p, axis=-1)   # also row by row on shape (batch, n)
    classes = list(range(max(k, 2)))
    average = metric.split("_")[0] if "_" in metric else "binary" if len(classes) == 2 else "macro"
    fn = {"precision": sk.precision_score, "recall": sk.recall_score}.get(metric, sk.f1_score)
    kwargs = {} if average == "binary" else {"labels": classes}
    return lambda t, p: float(fn(t, p, average=average, zero_division=0, **kwargs))


def classification_metrics(labels: Sequence[int], predictions: Sequence[int],
                           num_labels: int | None = None) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of ``predictions`` against ``labels`` (class indices, ``(n,)``).

    Two classes: ``precision``/``recall``/``f1`` are class 1's (the positive class); more: macro averages.
    ``macro_f1`` (mean of the per-class F1) and ``weighted_f1`` (weighted by class shares in ``labels``) are always
    there. ``num_labels`` is inferred from the values when omitted."""
    y_true, y_pred, k = check_pair(labels, predictions, num_labels)
    return {metric: float(_scorer(metric, k)(y_true, y_pred)) for metric in METRICS}


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_labels: int | None = None,
                     normalize: str | None = None) -> np.ndarray:
    """Shape ``(k, k)``, row = true class, column = predicted. ``normalize``: ``None`` (counts),
    ``"true"`` (rows sum to 1: recall on the diagonal), ``"pred"`` (columns: precision) or ``"all"``."""
    checks.choice("normalize", normalize, (None, "true", "pred", "all"))
    y_true, y_pred, k = check_pair(labels, predictions, num_labels)
    return sk.confusion_matrix(y_true, y_pred, labels=list(range(max(k, 2))), normalize=normalize)


def plot_confusion_matrix(labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str] | None = None,
                          *, normalize: str | None = None, ax=None, title: str | None = None):
    """Draw the confusion matrix (rows true, columns predicted); returns the matplotlib ``Axes``."""
    import matplotlib.pyplot as plt
    names = None if label_names is None else list(label_names)
    matrix = confusion_matrix(labels, predictions, None if names is None else len(names), normalize)
    ax = ax or plt.subplots(figsize=(3.2 + 0.5 * len(matrix), 2.8 + 0.5 * len(matrix)))[1]
    sk.ConfusionMatrixDisplay(matrix, display_labels=names).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format=".2f" if normalize else "d")
    ax.set(xlabel="predicted", ylabel="true", title=title or ax.get_title())
    return ax


@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap of ``metric(a) - metric(b)`` on the same test examples."""
    metric: str
    difference: float          # observed metric(a) - metric(b)
    low: float                 # the confidence interval of the difference
    high: float
    confidence: float
    resamples: int
    seed: int
    a: float                   # observed metric of model a
    b: float                   # observed metric of model b
    a_interval: tuple[float, float]   # percentile interval of metric(a) alone
    b_interval: tuple[float, float]
    pvalue: float              # two-sided bootstrap p-value for "no difference"
    distribution: np.ndarray = field(repr=False)   # resampled differences, shape (resamples,)

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def verdict(self, *, up: str, down: str, same: str) -> str:
        """The word for a sentence: ``up`` when the whole interval is above zero (a beats b), ``down`` when it
        is below, ``same`` when it contains zero (no difference this test can tell from noise)."""
        return up if self.low > 0 else down if self.high < 0 else same


def paired_bootstrap(labels: Sequence[int], predictions_a, predictions_b, *, metric: str = "accuracy",
                     resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                     num_labels: int | None = None) -> BootstrapResult:
    """Confidence interval for ``metric(a) - metric(b)`` (a :data:`METRICS` name) on the same ``n`` examples.

    Predictions: class indices, shape ``(n,)``, or ``(runs, n)`` for several runs of a model (e.g. one row per seed;
    its metric is then the mean over its runs). Each of ``resamples`` test sets draws ``n`` examples with replacement,
    the *same* ones for every run of both models (that makes it paired); the interval is the percentiles of the
    differences. It covers the examples' sampling error, and the seeds' spread only through the runs given.
    p-value: twice the share of differences on the far side of zero (at most 1)."""
    checks.choice("metric", metric, METRICS)
    level, runs = checks.number("confidence", confidence, 0, 1), []
    for name, p in (("predictions_a", np.asarray(predictions_a)), ("predictions_b", np.asarray(predictions_b))):
        if p.ndim not in (1, 2) or not p.size:
            raise ValueError(f"{name} has shape {p.shape}: expected (n,) or (runs, n) class indices")
        runs.append([check_pair(labels, run, num_labels, ("labels", name)) for run in p.reshape(-1, p.shape[-1])])
    y, score = runs[0][0][0], _scorer(metric, max(c[2] for side in runs for c in side))
    resamples = checks.integer("resamples", resamples, minimum=100)
    index = np.random.default_rng(seed).integers(0, len(y), (resamples, len(y)))
    if metric == "accuracy":   # vectorized: per example, the share of a model's runs that got it right
        right = [np.mean([c[1] == y for c in side], axis=0) for side in runs]
        sa, sb = (r[index].mean(axis=1) for r in right)
    else:
        sa, sb = (np.array([np.mean([score(y[i], c[1][i]) for c in side]) for i in index]) for side in runs)
    a, b = (float(np.mean([score(y, c[1]) for c in side])) for side in runs)
    diff, interval = sa - sb, lambda v: tuple(np.percentile(v, [50 * (1 - level), 50 * (1 + level)]).tolist())
    pvalue = float(min(1.0, 2 * min(np.mean(diff <= 0), np.mean(diff >= 0))))
    return BootstrapResult(metric, a - b, *interval(diff), level, resamples, seed, a, b, interval(sa), interval(sb),
                           pvalue, diff)


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

    def verdict(self, *, up: str, down: str, same: str, alpha: float = 0.05) -> str:
        """The word for a sentence: ``up`` when a is right more often than b and ``pvalue < alpha``, ``down``
        when b is, ``same`` otherwise (no difference this test can tell from noise)."""
        if self.pvalue >= checks.number("alpha", alpha, 0, 1):
            return same
        return up if self.only_a_correct > self.only_b_correct else down


def mcnemar(labels: Sequence[int], predictions_a: Sequence[int], predictions_b: Sequence[int], *,
            exact: bool | None = None) -> McNemarResult:
    """McNemar's test: are models a and b equally accurate on these ``n`` examples?

    Only discordant examples count: ``b`` where only a is right, ``c`` where only b is. If both are equally accurate,
    ``b ~ Binomial(b + c, 1/2)``: ``exact=True`` is that test (two-sided ``scipy.stats.binomtest``), ``False`` the
    chi-square ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom, ``None`` exact when ``b + c < 25``. No discordant
    example: p-value 1."""
    y, a, _ = check_pair(labels, predictions_a, None, ("labels", "predictions_a"))
    _, b, _ = check_pair(labels, predictions_b, None, ("labels", "predictions_b"))
    table = np.bincount(2 * (a != y) + (b != y), minlength=4).reshape(2, 2)   # [[both, only a], [only b, none]]
    only_a, only_b = int(table[0, 1]), int(table[1, 0])
    n, exact = only_a + only_b, bool(only_a + only_b < 25 if exact is None else exact)
    if n == 0:
        statistic, pvalue = 0.0, 1.0
    elif exact:
        statistic, pvalue = min(only_a, only_b), stats.binomtest(only_a, n, 0.5).pvalue
    else:
        statistic = (abs(only_a - only_b) - 1) ** 2 / n
        pvalue = stats.chi2.sf(statistic, df=1)
    return McNemarResult(only_a, only_b, float(statistic), min(1.0, float(pvalue)), exact, table)


@dataclass(frozen=True)
class CalibrationResult:
    """Reliability of the top-class probability, in equal-width confidence bins."""
    bin_edges: np.ndarray      # shape (bins + 1,), 0 .. 1
    confidence: np.ndarray     # mean top-class probability per bin, shape (bins,); NaN where empty
    accuracy: np.ndarray       # share correct per bin; NaN where empty
    counts: np.ndarray         # examples per bin
    ece: float                 # expected calibration error
    mean_confidence: float
    accuracy_overall: float


def calibration(labels: Sequence[int], probabilities, bins: int = 10) -> CalibrationResult:
    """Accuracy against confidence (the predicted class's probability) in ``bins`` bins of ``[0, 1]``.

    ``labels`` ``(n,)``; ``probabilities`` ``(n, k)`` rows summing to 1, or ``(n,)`` = P(class 1). A bin holds
    confidences in ``(lo, hi]`` (the first also 0); per-bin values come from ``sklearn.calibration.calibration_curve``
    (NaN for an empty bin, which it leaves out). ECE = ``sum_b (n_b / n) |accuracy_b - confidence_b|``: 0 when 80 %
    confident answers are 80 % right."""
    y, bins = as_labels(labels, "labels"), checks.integer("bins", bins)
    p = np.asarray(probabilities, dtype=np.float64)
    p = np.stack([1.0 - p, p], axis=1) if p.ndim == 1 else p
    if y.size == 0 or p.ndim != 2 or p.shape[0] != y.size or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (n,) or (n, k >= 2), n = {y.size} rows, one per label; got {p.shape}")
    if not (np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1 and np.allclose(p.sum(1), 1, atol=1e-3)):
        raise ValueError("probabilities must be in [0, 1] and each row must sum to 1 (softmax the logits first)")
    if y.max() >= p.shape[1]:
        raise ValueError(f"labels must be class indices 0..{p.shape[1] - 1} (probabilities have {p.shape[1]} columns)")
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.int64)   # shapes (n,)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], confidence), minlength=bins)
    accuracy, mean_confidence = np.full(bins, np.nan), np.full(bins, np.nan)
    accuracy[counts > 0], mean_confidence[counts > 0] = calibration_curve(correct, confidence, n_bins=bins)
    ece = float(np.nansum(counts / y.size * np.abs(accuracy - mean_confidence)))
    return CalibrationResult(np.linspace(0, 1, bins + 1), mean_confidence, accuracy, counts, ece,
                             float(confidence.mean()), float(correct.mean()))


def expected_calibration_error(labels: Sequence[int], probabilities, bins: int = 10) -> float:
    """ECE of the top-class probability with ``bins`` equal-width bins; see :func:`calibration`."""
    return calibration(labels, probabilities, bins).ece


def plot_reliability(labels: Sequence[int], probabilities, bins: int = 10, *, ax=None, label: str | None = None,
                     show_counts: bool = True):
    """Reliability diagram: accuracy against mean confidence per bin, and the diagonal of perfect
    calibration; returns the matplotlib ``Axes``. Call it twice on one ``ax`` to compare models."""
    import matplotlib.pyplot as plt
    result = calibration(labels, probabilities, bins)
    ax = ax or plt.subplots(figsize=(4.2, 4))[1]
    filled = result.counts > 0
    x, y, n = result.confidence[filled], result.accuracy[filled], result.counts[filled]
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(x, y, "o-", label=f"{label + ': ' if label else ''}ECE {result.ece:.3f}")
    for xi, yi, ni in zip(x, y, n) if show_counts else ():
        ax.annotate(str(ni), (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
    ax.set(xlabel="confidence (probability of the predicted class)", ylabel="accuracy in the bin",
           xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(loc="upper left", fontsize=8)
    return ax
