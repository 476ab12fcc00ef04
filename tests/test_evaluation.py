"""lightft.metrics (metrics, McNemar, the paired bootstrap, calibration) and lightft.evaluation
(cross-validation), checked against values worked out by hand."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

import lightft
from lightft import evaluation, metrics
from lightft.evaluation import cross_validate
from lightft.metrics import (
    calibration,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    mcnemar,
    paired_bootstrap,
    plot_confusion_matrix,
    plot_reliability,
)

# 10 examples; y = 1 for the first 4. Predictions: TP = 3 (0,1,2), FN = 1 (3), FP = 2 (4,5), TN = 4.
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
PRED = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]


def test_binary_metrics_by_hand():
    m = classification_metrics(LABELS, PRED)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(3 / 5)            # TP / (TP + FP)
    assert m["recall"] == pytest.approx(3 / 4)               # TP / (TP + FN)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))  # 2TP / (2TP + FP + FN) = 6/9
    f1_neg = 2 * 4 / (2 * 4 + 1 + 2)                          # class 0: TP=4, FP=1, FN=2 -> 8/11
    assert m["macro_f1"] == pytest.approx((6 / 9 + f1_neg) / 2)
    assert m["weighted_f1"] == pytest.approx(0.4 * 6 / 9 + 0.6 * f1_neg)


def test_three_classes_accuracy_and_macro_f1_disagree():
    # 8 of class 0, 1 of class 1, 1 of class 2; always predicting 0 is 80 % accurate
    labels = [0] * 8 + [1, 2]
    m = classification_metrics(labels, [0] * 10, num_labels=3)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((2 * 8 / (16 + 2)) / 3)   # F1 of class 0 = 16/18, others 0
    assert m["f1"] == m["macro_f1"]


def test_confusion_matrix_counts_and_normalised():
    assert confusion_matrix(LABELS, PRED).tolist() == [[4, 2], [1, 3]]
    rows = confusion_matrix(LABELS, PRED, normalize="true")
    assert rows[1].tolist() == pytest.approx([0.25, 0.75])
    assert confusion_matrix([0, 0], [0, 0], num_labels=3).shape == (3, 3)


@pytest.mark.parametrize(
    "labels, predictions, message",
    [
        ([0, 1, 1], [0, 1], "differ in length"),
        ([], [], "empty"),
        ([0, 1], [0, -1], "non-negative"),
        ([0, 1], [0, 0.5], "integer"),
        ([[0, 1]], [[0, 1]], "1-D"),
    ],
)
def test_bad_input_is_refused(labels, predictions, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(labels, predictions)
    with pytest.raises(ValueError, match=message):
        mcnemar(labels, predictions, predictions)


def test_unknown_label_value_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        classification_metrics([0, 1, 2], [0, 1, 1], num_labels=2)
    with pytest.raises(ValueError, match="unknown"):
        paired_bootstrap([0, 1, 2], [0, 1, 1], [0, 1, 1], num_labels=2)
    with pytest.raises(TypeError):
        classification_metrics("0101", "0101")


def test_mcnemar_exact_by_hand():
    # a right & b wrong on 1 example, a wrong & b right on 6, both right on 3
    labels = [1] * 10
    a = [1, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    b = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    result = mcnemar(labels, a, b)
    assert (result.only_a_correct, result.only_b_correct, result.exact) == (1, 6, True)
    # two-sided exact: 2 * P(X <= 1), X ~ Binomial(7, 1/2) = 2 * (1 + 7) / 128
    assert result.pvalue == pytest.approx(16 / 128)
    assert result.table.tolist() == [[3, 1], [6, 0]]
    assert mcnemar(labels, b, a).pvalue == pytest.approx(16 / 128)   # symmetric


def test_mcnemar_chi_square_by_hand_and_no_discordant_pairs():
    # 20 examples only a gets right, 40 only b gets right, 40 both right
    labels = np.ones(100, dtype=int)
    a = np.r_[np.ones(20), np.zeros(40), np.ones(40)].astype(int)
    b = np.r_[np.zeros(20), np.ones(40), np.ones(40)].astype(int)
    result = mcnemar(labels, a, b)
    assert not result.exact
    assert result.statistic == pytest.approx((40 - 20 - 1) ** 2 / 60)   # 361 / 60
    assert result.pvalue == pytest.approx(math.erfc(math.sqrt(361 / 60 / 2)))   # chi2(1) tail
    exact = mcnemar(labels, a, b, exact=True)
    assert exact.exact and 0 < exact.pvalue < 0.05
    same = mcnemar([0, 1, 1], [0, 1, 0], [0, 1, 0])
    assert same.pvalue == 1.0 and same.discordant == 0


def test_paired_bootstrap_identical_and_dominating_models():
    labels = [0, 1] * 20
    same = paired_bootstrap(labels, labels, labels, resamples=200)
    assert (same.difference, same.low, same.high, same.pvalue) == (0.0, 0.0, 0.0, 1.0)
    wrong = [1 - y for y in labels]
    best = paired_bootstrap(labels, labels, wrong, resamples=200)
    assert best.difference == best.low == best.high == 1.0 and best.significant


def test_paired_bootstrap_spread_matches_the_formula():
    # per-example difference d_i = correct_a - correct_b: twelve +1, four -1, 84 zeros (n = 100).
    # The bootstrap mean of d has standard deviation sqrt(var(d) / n), var(d) = E[d^2] - E[d]^2
    # = 0.16 - 0.08^2 = 0.1536  ->  sd = 0.03919.
    labels = np.zeros(100, dtype=int)
    a = np.zeros(100, dtype=int)
    b = np.zeros(100, dtype=int)
    b[:12] = 1            # b wrong where a right
    a[12:16] = 1          # a wrong where b right
    result = paired_bootstrap(labels, a, b, resamples=20000, seed=1)
    assert result.difference == pytest.approx(0.08)
    assert result.distribution.mean() == pytest.approx(0.08, abs=0.002)
    assert result.distribution.std() == pytest.approx(math.sqrt(0.1536 / 100), rel=0.03)
    assert result.low < 0.08 < result.high
    assert result.a == pytest.approx(0.96) and result.b == pytest.approx(0.88)
    assert result.a_interval[0] <= result.a <= result.a_interval[1] <= 1
    assert result.b_interval[0] <= result.b <= result.b_interval[1]
    assert 0 < result.pvalue < 0.1   # about 2 * P(N(0.08, 0.039) <= 0) = 0.04
    again = paired_bootstrap(labels, a, b, resamples=20000, seed=1)
    assert (again.low, again.high) == (result.low, result.high)   # seeded


def test_paired_bootstrap_f1_and_bad_arguments():
    labels = [0, 1] * 30
    result = paired_bootstrap(labels, labels, [0] * 60, metric="f1", resamples=200)
    assert result.a == 1.0 and result.b == 0.0 and result.low > 0.9
    with pytest.raises(ValueError, match="metric"):
        paired_bootstrap(labels, labels, labels, metric="auc")
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(labels, labels, labels, resamples=5)
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap(labels, labels, labels[:-1])


def test_paired_bootstrap_verdict_follows_the_interval():
    labels = np.zeros(100, dtype=int)
    a, b = np.zeros(100, dtype=int), np.zeros(100, dtype=int)
    b[:20] = 1   # 20 examples only a gets right, none only b: d = 0.2, sd = sqrt((0.2 - 0.04) / 100) = 0.04
    clear = paired_bootstrap(labels, a, b, resamples=4000)
    assert clear.difference == pytest.approx(0.2) and clear.low > 0.05 and clear.significant
    words = dict(up="better", down="worse", same="tied")
    assert clear.verdict(**words) == "better"
    assert paired_bootstrap(labels, b, a, resamples=4000).verdict(**words) == "worse"
    assert paired_bootstrap(labels, a, a, resamples=200).verdict(**words) == "tied"


def test_paired_bootstrap_of_several_runs_averages_them_and_resamples_examples_not_runs():
    # a: 3 runs (seeds), b: 2 runs, on the same 200 examples (all labelled 0). Mean accuracies by hand:
    # a = (1 + 0.5 + 0.5) / 3, b = (0.5 + 0.5) / 2.
    labels = np.zeros(200, dtype=int)
    half = np.r_[np.zeros(100), np.ones(100)].astype(int)        # right on the first 100
    other = np.r_[np.ones(100), np.zeros(100)].astype(int)       # right on the last 100
    a = np.stack([labels, half, other])
    b = np.stack([half, other])
    result = paired_bootstrap(labels, a, b, resamples=4000, seed=0)
    assert result.difference == pytest.approx(2 / 3 - 1 / 2)
    assert (result.a, result.b) == pytest.approx((2 / 3, 1 / 2))
    # per example: a right in 2 of 3 runs, b in 1 of 2, everywhere: a constant difference, so no spread at all
    assert result.low == pytest.approx(1 / 6) and result.high == pytest.approx(1 / 6) and result.significant
    tied = paired_bootstrap(labels, np.stack([half, other]), np.stack([other, half]), resamples=500)
    assert tied.difference == 0 and tied.verdict(up="up", down="down", same="same") == "same"
    # any other metric: the mean of the runs' metrics, by hand
    y = np.array([0, 1] * 50)
    runs = np.stack([y, np.ones(100, dtype=int)])   # F1 of class 1: 1.0, and 2 * 0.5 / 1.5 = 2/3
    f1 = paired_bootstrap(y, runs, 1 - y, metric="f1", resamples=200)
    assert f1.a == pytest.approx((1 + 2 / 3) / 2) and f1.b == 0.0 and f1.low > 0.5


def test_paired_bootstrap_of_several_runs_refuses_mismatched_shapes():
    labels = [0, 1, 1, 0]
    with pytest.raises(ValueError, match=r"labels \(4\) and predictions_b \(3\) differ in length"):
        paired_bootstrap(labels, [0, 1, 1, 0], np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"predictions_a has shape \(2, 2, 4\): expected \(n,\) or \(runs, n\)"):
        paired_bootstrap(labels, np.zeros((2, 2, 4), dtype=int), [0, 1, 1, 0])
    with pytest.raises(ValueError, match="integer class indices"):
        paired_bootstrap(labels, [0.5, 1, 1, 0], [0, 1, 1, 0])


def test_mcnemar_verdict_needs_significance_and_takes_the_sign_from_the_discordant_pairs():
    labels = np.ones(100, dtype=int)
    a = np.r_[np.ones(20), np.zeros(40), np.ones(40)].astype(int)   # only a right: 20, only b right: 40
    b = np.r_[np.zeros(20), np.ones(40), np.ones(40)].astype(int)
    words = dict(up="above", down="below", same="level with")
    assert mcnemar(labels, a, b).verdict(**words) == "below"
    assert mcnemar(labels, b, a).verdict(**words) == "above"
    assert mcnemar(labels, a, b).verdict(**words, alpha=0.001) == "level with"   # p is about 0.014
    assert mcnemar(labels, a, a).verdict(**words) == "level with"
    with pytest.raises(ValueError, match="alpha"):
        mcnemar(labels, a, b).verdict(**words, alpha=2)


def test_calibration_by_hand():
    # 4 examples, top-class confidences 0.95, 0.95, 0.65, 0.65 with 10 bins:
    # bin (0.9, 1.0]: both right -> |1 - 0.95| = 0.05; bin (0.6, 0.7]: one right -> |0.5 - 0.65| = 0.15
    # ECE = 0.5 * 0.05 + 0.5 * 0.15 = 0.10
    labels = [1, 0, 1, 1]
    p1 = [0.95, 0.05, 0.65, 0.35]              # P(class 1); predicted 1, 0, 1, 0
    result = calibration(labels, p1, bins=10)
    assert result.ece == pytest.approx(0.10)
    assert result.counts.tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert result.accuracy[9] == 1.0 and result.accuracy[6] == 0.5
    assert np.isnan(result.accuracy[0])
    two_columns = np.stack([1 - np.array(p1), p1], axis=1)
    assert expected_calibration_error(labels, two_columns, bins=10) == pytest.approx(0.10)
    assert expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == 0.0


def test_calibration_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        calibration([0, 1], [[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="rows"):
        calibration([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="class indices"):
        calibration([0, 2], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="bins"):
        calibration([0, 1], [0.2, 0.8], bins=0)


def test_plots_return_axes():
    ax = plot_confusion_matrix(LABELS, PRED, ["negative", "positive"], normalize="true")
    assert ax.get_xlabel() == "predicted"
    ax = plot_reliability([1, 0, 1, 1], [0.95, 0.05, 0.65, 0.35], label="model")
    assert "ECE 0.100" in ax.get_legend().get_texts()[1].get_text()


def _keyword_rule(train_texts, train_labels, test_texts):
    return [1 if "good" in t else 0 for t in test_texts]


def test_cross_validate_with_a_function_is_stratified_and_scores_every_example_once():
    texts = [f"good film {i}" for i in range(10)] + [f"bad film {i}" for i in range(10)]
    labels = [1] * 10 + [0] * 10
    texts[0] = "bad film, actually"        # one example the keyword rule gets wrong
    seen = []

    def fit_predict(train_texts, train_labels, test_texts):
        seen.append((np.bincount(train_labels).tolist(), len(test_texts)))
        return _keyword_rule(train_texts, train_labels, test_texts)

    result = cross_validate(fit_predict, texts, labels, folds=5, seed=3)
    assert seen == [([8, 8], 4)] * 5                    # stratified: 2 + 2 held out per fold
    assert len(result.folds) == 5 and result.seed == 3
    assert sorted(r["accuracy"] for r in result.folds) == [0.75, 1.0, 1.0, 1.0, 1.0]
    assert result.mean["accuracy"] == pytest.approx(0.95)
    assert result.std["accuracy"] == pytest.approx(np.std([0.75, 1, 1, 1, 1], ddof=1))
    assert (result.predictions == np.array(_keyword_rule(None, None, texts))).all()
    assert "0.950" in result.summary()


def test_cross_validate_bad_input():
    texts, labels = ["a", "b", "c", "d"], [0, 1, 0, 1]
    with pytest.raises(ValueError, match="at least folds"):
        cross_validate(_keyword_rule, texts, labels, folds=3)
    with pytest.raises(ValueError, match="differ in length"):
        cross_validate(_keyword_rule, texts, labels[:3], folds=2)
    with pytest.raises(ValueError, match="folds"):
        cross_validate(_keyword_rule, texts, labels, folds=1)
    with pytest.raises(ValueError, match="single class"):
        cross_validate(_keyword_rule, texts, [0, 0, 0, 0], folds=2)
    with pytest.raises(TypeError):
        cross_validate(42, texts, labels, folds=2)


def test_cross_validate_fine_tunes_each_fold(tmp_path, tiny_model_dir):
    data = lightft.load_dataset("rotten_tomatoes")
    texts, labels = data["train"]["text"][:40], data["train"]["label"][:40]
    result = cross_validate(str(tiny_model_dir), texts, labels, folds=2, seed=0, epochs=1, max_length=16,
                            batch_size=8, precision="fp32", quiet=True, label_names=["negative", "positive"])
    assert [r["n_train"] for r in result.folds] == [20, 20]
    assert set(result.predictions.tolist()) <= {0, 1} and (result.predictions >= 0).all()
    assert 0 <= result.mean["accuracy"] <= 1
    with pytest.raises(ValueError, match="output_dir"):
        cross_validate("minilm-l6", texts, labels, folds=2, output_dir=tmp_path)


def test_the_chapter_names_still_resolve_from_evaluation():
    # book/evaluation.md and book/faq.md call lightft.evaluation.mcnemar etc.; metrics never imports train
    for name in ("calibration", "classification_metrics", "mcnemar", "paired_bootstrap", "expected_calibration_error",
                 "plot_confusion_matrix", "plot_reliability"):
        assert getattr(evaluation, name) is getattr(metrics, name)
    assert "lightft.train" not in open(metrics.__file__).read()
