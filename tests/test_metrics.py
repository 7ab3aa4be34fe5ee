"""Long-tailed metrics (docs/methods.md): hand-worked golden values, group boundaries, sklearn agreement."""
import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support

from pipeline.longtail.metrics import (
    confusion_matrix, expected_calibration_error, group_of, long_tail_metrics, per_class_table,
    reliability_bins,
)

# 4 classes; training counts 200 > 100 (many), 100 == many_threshold (medium),
# 20 == few_threshold (medium), 5 < 20 (few).
COUNTS = [200, 100, 20, 5]
MANY, FEW = 100, 20
LABELS = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
PREDICTED = np.array([0, 0, 0, 0, 1, 0, 2, 1, 0, 0])
# Confusion matrix (rows = true class):   column sums (predicted counts) = [7, 2, 1, 0]
#   [[4, 0, 0, 0],
#    [1, 1, 0, 0],
#    [0, 1, 1, 0],
#    [2, 0, 0, 0]]
# recall = [1, 1/2, 1/2, 0]; precision = [4/7, 1/2, 1, 0 (no predictions)]
# F1 = 2TP / (2TP + FP + FN) = [8/11, 2/4, 2/3, 0/2]
HAND_CONFUSION = np.array([[4, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [2, 0, 0, 0]])


def test_hand_example_top1_differs_from_balanced_accuracy():
    m = long_tail_metrics(LABELS, PREDICTED, None, COUNTS, MANY, FEW)
    assert m["top1"] == pytest.approx(6 / 10)                   # 4 + 1 + 1 + 0 correct of 10
    assert m["balanced_accuracy"] == pytest.approx(0.5)         # mean(1, 1/2, 1/2, 0)
    assert m["many_accuracy"] == pytest.approx(1.0)             # class 0
    assert m["medium_accuracy"] == pytest.approx(0.5)           # classes 1, 2: mean(1/2, 1/2)
    assert m["few_accuracy"] == 0.0                             # class 3: a real 0, not NaN
    assert m["macro_f1"] == pytest.approx((8 / 11 + 1 / 2 + 2 / 3 + 0) / 4)  # = 125 / 264
    assert (m["num_many"], m["num_medium"], m["num_few"]) == (1, 2, 1)
    assert m["num_samples"] == 10
    assert math.isnan(m["ece"])                                 # no probabilities given


def test_groups_are_inclusive_at_both_thresholds():
    assert group_of(COUNTS, MANY, FEW) == ["many", "medium", "medium", "few"]
    assert group_of([101, 100, 99, 21, 20, 19], 100, 20) == ["many", "medium", "medium", "medium", "medium", "few"]


def test_overlapping_thresholds_raise():
    with pytest.raises(ValueError, match="both many and few"):
        group_of([10, 50], many_threshold=20, few_threshold=30)


def test_empty_group_is_nan_not_zero():
    m = long_tail_metrics(np.array([0, 1, 2]), np.array([0, 1, 0]), None, [50, 40, 30], MANY, FEW)
    assert math.isnan(m["many_accuracy"]) and math.isnan(m["few_accuracy"])
    assert m["medium_accuracy"] == pytest.approx(2 / 3)
    assert (m["num_many"], m["num_medium"], m["num_few"]) == (0, 3, 0)


def test_group_without_test_samples_is_nan_and_left_out_of_balanced_accuracy():
    # class 0 (many) has no test sample: its recall is undefined, not 0.
    m = long_tail_metrics(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 0]), None, [500, 5], MANY, FEW)
    assert math.isnan(m["many_accuracy"])
    assert m["num_many"] == 1
    assert m["few_accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # macro-F1 keeps class 0 as F1 = 0 (one false positive, no samples), like sklearn zero_division=0.
    assert m["macro_f1"] == pytest.approx((0 + 2 * 3 / (2 * 3 + 0 + 1)) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_and_per_class_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    num_classes = 7  # class 6 never occurs nor is predicted; class 5 occurs but is never predicted
    labels = rng.integers(0, 6, size=200)
    predicted = np.where(rng.random(200) < 0.5, labels, rng.integers(0, 5, size=200))
    predicted[predicted == 5] = 0
    counts = rng.integers(1, 300, size=num_classes)
    m = long_tail_metrics(labels, predicted, None, counts, MANY, FEW)
    expected_f1 = f1_score(labels, predicted, average="macro", labels=range(num_classes), zero_division=0)
    assert m["macro_f1"] == pytest.approx(expected_f1, abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted), abs=1e-12)
    assert m["top1"] == pytest.approx(np.mean(labels == predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(num_classes), zero_division=0)
    rows = per_class_table(labels, predicted, counts, None, MANY, FEW)
    np.testing.assert_allclose([r["precision"] for r in rows], precision, atol=1e-12)
    np.testing.assert_allclose([r["recall"] for r in rows], recall, atol=1e-12)
    np.testing.assert_allclose([r["f1"] for r in rows], f1, atol=1e-12)
    assert [r["support"] for r in rows] == support.tolist()
    assert np.mean([r["f1"] for r in rows]) == pytest.approx(m["macro_f1"])


def test_confusion_matrix_hand_values_and_rows_sum_to_support():
    cm = confusion_matrix(LABELS, PREDICTED, 4)
    np.testing.assert_array_equal(cm, HAND_CONFUSION)
    rng = np.random.default_rng(3)
    labels, predicted = rng.integers(0, 9, 300), rng.integers(0, 9, 300)
    cm = confusion_matrix(labels, predicted, 10)
    assert cm.shape == (10, 10)
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(labels, minlength=10))
    np.testing.assert_array_equal(cm.sum(axis=0), np.bincount(predicted, minlength=10))


def test_per_class_table_agrees_with_confusion_matrix():
    rows = per_class_table(LABELS, PREDICTED, COUNTS, ["cat", "dog", "eel", "fox"], MANY, FEW)
    cm = HAND_CONFUSION
    tp, support, npred = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["name"] for r in rows] == ["cat", "dog", "eel", "fox"]
    assert [r["train_count"] for r in rows] == COUNTS
    assert [r["group"] for r in rows] == ["many", "medium", "medium", "few"]
    assert [r["support"] for r in rows] == support.tolist()
    for c, r in enumerate(rows):
        assert r["accuracy"] == r["recall"] == pytest.approx(tp[c] / support[c])
        expected_precision = tp[c] / npred[c] if npred[c] else 0.0
        assert r["precision"] == pytest.approx(expected_precision)
        assert r["f1"] == pytest.approx(2 * tp[c] / (support[c] + npred[c]))
    assert rows[3]["precision"] == 0.0 and rows[0]["precision"] == pytest.approx(4 / 7)


def test_per_class_accuracy_is_nan_without_test_samples():
    rows = per_class_table(np.array([1, 1]), np.array([1, 1]), [10, 10], None, MANY, FEW)
    assert math.isnan(rows[0]["accuracy"]) and rows[0]["recall"] == 0.0 and rows[0]["name"] == "0"


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # bin of conf 0.75: 3 of 4 correct; bin of conf 0.5 (argmax tie -> class 0): 1 of 2 correct.
    probs = np.array([[0.75, 0.25]] * 4 + [[0.5, 0.5]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 1])
    assert expected_calibration_error(probs, labels) == 0.0
    m = long_tail_metrics(labels, probs.argmax(axis=1), probs, [300, 10], MANY, FEW)
    assert m["ece"] == 0.0


def test_ece_of_over_confident_example_equals_hand_value():
    # 4 samples at conf 0.9 with 2 correct: gap 0.4; 2 samples at conf 0.7 with 1 correct: gap 0.2.
    # ECE = 4/6 * 0.4 + 2/6 * 0.2 = 1/3.
    probs = np.array([[0.9, 0.1]] * 4 + [[0.7, 0.3]] * 2)
    labels = np.array([0, 0, 1, 1, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(1 / 3)
    bins = reliability_bins(probs.max(axis=1), probs.argmax(axis=1) == labels)
    filled = np.flatnonzero(bins.count)
    assert filled.tolist() == [10, 13]                        # (2/3, 11/15] and (13/15, 14/15]
    np.testing.assert_allclose(bins.confidence[filled], [0.7, 0.9])
    np.testing.assert_allclose(bins.accuracy[filled], [0.5, 0.5])
    assert np.isnan(bins.accuracy[0]) and bins.ece == pytest.approx(1 / 3)


def test_reliability_bins_are_right_inclusive():
    edges = np.linspace(0, 1, 16)
    bins = reliability_bins(np.array([0.0, edges[6], 1.0]), np.array([True, False, True]))
    assert bins.count.sum() == 3
    assert bins.count[0] == 1 and bins.count[5] == 1 and bins.count[14] == 1


@pytest.mark.parametrize("call", [
    lambda: long_tail_metrics(LABELS.reshape(2, 5), PREDICTED.reshape(2, 5), None, COUNTS, MANY, FEW),
    lambda: long_tail_metrics(LABELS, PREDICTED[:-1], None, COUNTS, MANY, FEW),
    lambda: long_tail_metrics(LABELS, PREDICTED, None, COUNTS[:3], MANY, FEW),       # label 3 out of range
    lambda: long_tail_metrics(LABELS - 1, PREDICTED, None, COUNTS, MANY, FEW),       # label -1
    lambda: long_tail_metrics(LABELS.astype(float), PREDICTED, None, COUNTS, MANY, FEW),
    lambda: long_tail_metrics(LABELS, PREDICTED, np.full((10, 5), 0.2), COUNTS, MANY, FEW),
    lambda: long_tail_metrics(LABELS, PREDICTED, np.full((10, 4), 3.0), COUNTS, MANY, FEW),  # logits
    lambda: long_tail_metrics(LABELS[:0], PREDICTED[:0], None, COUNTS, MANY, FEW),
    lambda: long_tail_metrics(LABELS, PREDICTED, None, [COUNTS], MANY, FEW),
    lambda: long_tail_metrics(LABELS, PREDICTED, None, COUNTS, MANY, FEW, num_bins=0),
    lambda: per_class_table(LABELS, PREDICTED, COUNTS, ["a", "b"], MANY, FEW),
    lambda: confusion_matrix(LABELS, PREDICTED, 3),
    lambda: reliability_bins(np.array([0.5, 1.5]), np.array([True, False])),
    lambda: reliability_bins(np.array([0.5, 0.6]), np.array([True])),
], ids=["2d-labels", "length-mismatch", "label-too-large", "negative-label", "float-labels",
        "prob-shape", "logits-not-probs", "empty", "2d-counts", "zero-bins", "names-length",
        "cm-range", "conf-range", "conf-length"])
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
