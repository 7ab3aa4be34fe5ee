"""Long-tailed classification metrics (docs/methods.md section 6), defined once.

Pure numpy functions on saved test predictions, shared by the evaluate stage, the
training loop's validation and the report. Conventions (all values are fractions in [0, 1]):

- Groups come from TRAINING counts (``group_of``, i.e. ``pipeline.longtail.groups.assign_groups``):
  many if n_c > many_threshold, few if n_c < few_threshold, medium otherwise (inclusive).
- Per-class accuracy is the recall of the class. Balanced accuracy and the group accuracies
  average it over the classes with at least one test sample; a group with no such class
  is NaN, never 0.
- Precision, recall and F1 follow scikit-learn with ``zero_division=0`` and
  ``labels=range(C)``: a class with no predictions has precision 0, a class with no test
  samples has recall 0, and F1 = 2 TP / (2 TP + FP + FN) is 0 when that denominator is 0
  (no samples and no predictions). Macro-F1 averages F1 over ALL C classes, those included.
- ECE uses ``num_bins`` equal-width bins on the max probability; bin b holds
  edges[b] < confidence <= edges[b + 1] (a confidence of exactly 0 goes to bin 0);
  correctness is argmax(probabilities) == label.

Per-class counts come from bincounts (O(N + C) memory), so the metrics never build the
C x C confusion matrix; ``confusion_matrix`` builds it only when asked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.longtail.groups import GROUPS, assign_groups

PROBABILITY_SUM_TOLERANCE = 1e-3  # float16/float32 softmax rows sum to 1 within this


# ----------------------------------------------------------------------------- validation

def _int_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _class_counts(class_counts) -> np.ndarray:
    counts = _int_vector(class_counts, "class_counts")
    if counts.size == 0 or (counts < 0).any():
        raise ValueError("class_counts must be a non-empty 1-d sequence of non-negative ints")
    return counts


def _in_range(array: np.ndarray, name: str, num_classes: int) -> np.ndarray:
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, "
                         f"found values in {int(array.min())}..{int(array.max())}")
    return array


def _predictions(labels, predicted, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    labels = _int_vector(labels, "labels")
    predicted = _int_vector(predicted, "predicted")
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predicted {predicted.shape} differ in length")
    if labels.size == 0:
        raise ValueError("no predictions: labels and predicted are empty")
    return _in_range(labels, "labels", num_classes), _in_range(predicted, "predicted", num_classes)


def _probabilities(probabilities, num_samples: int, num_classes: int) -> np.ndarray:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.shape != (num_samples, num_classes):
        raise ValueError(f"probabilities must have shape (N, C) = {(num_samples, num_classes)}, "
                         f"got {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("probabilities must be finite and in [0, 1] (pass softmax outputs, not logits)")
    if not np.allclose(probs.sum(axis=1), 1.0, rtol=0.0, atol=PROBABILITY_SUM_TOLERANCE):
        raise ValueError("each row of probabilities must sum to 1 (pass softmax outputs, not logits)")
    return probs


def _check_bins(num_bins: int) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")


# ----------------------------------------------------------------------------- groups and counts

def group_of(class_counts: Sequence[int], many_threshold: int, few_threshold: int) -> list[str]:
    """Per class from training counts: many if n_c > many_threshold, few if n_c < few_threshold, else medium."""
    counts = _class_counts(class_counts)
    if few_threshold > many_threshold + 1:
        raise ValueError(f"few_threshold={few_threshold} > many_threshold + 1 = {many_threshold + 1}: "
                         "a count between them would be both many and few")
    return assign_groups(counts.tolist(), many_threshold, few_threshold)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """M[i, j] = number of test samples of true class i predicted as class j, shape (C, C), int64."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    labels, predicted = _predictions(labels, predicted, int(num_classes))
    flat = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class _ClassCounts:
    """Per-class true positives, test support (row sums) and predicted counts (column sums)."""

    true_positive: np.ndarray
    support: np.ndarray
    predicted: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> "_ClassCounts":
        return cls(true_positive=np.bincount(labels[labels == predicted], minlength=num_classes),
                   support=np.bincount(labels, minlength=num_classes),
                   predicted=np.bincount(predicted, minlength=num_classes))

    def recall(self) -> np.ndarray:
        """TP / support per class; NaN where the class has no test samples."""
        nan = np.full(self.support.shape, np.nan)
        return np.divide(self.true_positive, self.support, out=nan, where=self.support > 0)

    def precision_recall_f1(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """scikit-learn's precision, recall, F1 with zero_division=0 (0 wherever a denominator is 0)."""
        tp = self.true_positive.astype(np.float64)
        precision = np.divide(tp, self.predicted, out=np.zeros_like(tp), where=self.predicted > 0)
        recall = np.divide(tp, self.support, out=np.zeros_like(tp), where=self.support > 0)
        f1_denominator = (self.support + self.predicted).astype(np.float64)  # 2TP + FP + FN
        f1 = np.divide(2.0 * tp, f1_denominator, out=np.zeros_like(tp), where=f1_denominator > 0)
        return precision, recall, f1


def _mean_or_nan(values: np.ndarray) -> float:
    """Mean of the non-NaN entries, NaN when there are none."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


# ----------------------------------------------------------------------------- calibration

@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width bins: edges (B + 1,); per bin mean confidence, accuracy (NaN if empty) and count."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over non-empty bins of (n_b / N) * |acc_b - conf_b|."""
        total = int(self.count.sum())
        if total == 0:
            raise ValueError("ECE of no samples is undefined")
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.count[filled] / total * gaps))


def reliability_bins(confidences: np.ndarray, correct: np.ndarray, num_bins: int = 15) -> ReliabilityBins:
    """Bin b of num_bins equal-width bins on [0, 1] holds edges[b] < confidence <= edges[b+1] (0 goes to bin 0)."""
    _check_bins(num_bins)
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct)
    if confidences.ndim != 1 or correct.shape != confidences.shape:
        raise ValueError(f"confidences {confidences.shape} and correct {correct.shape} must be 1-d "
                         "and of equal length")
    if not np.isfinite(confidences).all() or (confidences < 0).any() or (confidences > 1).any():
        raise ValueError("confidences must be finite and in [0, 1]")
    if correct.dtype != np.bool_ and not np.isin(correct, (0, 1)).all():
        raise ValueError("correct must be booleans or 0/1")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    conf_sum = np.bincount(index, weights=confidences, minlength=num_bins)
    hit_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=num_bins)
    confidence = np.divide(conf_sum, count, out=np.full(num_bins, np.nan), where=count > 0)
    accuracy = np.divide(hit_sum, count, out=np.full(num_bins, np.nan), where=count > 0)
    return ReliabilityBins(edges=edges, confidence=confidence, accuracy=accuracy, count=count)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """ECE of max-probability confidences against argmax correctness: sum_b (n_b / N) |acc_b - conf_b|."""
    probs = np.asarray(probabilities)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probabilities must be a non-empty (N, C) array, got shape {probs.shape}")
    labels = _in_range(_int_vector(labels, "labels"), "labels", probs.shape[1])
    return _ece(_probabilities(probs, labels.size, probs.shape[1]), labels, num_bins)


def _ece(probs: np.ndarray, labels: np.ndarray, num_bins: int) -> float:
    return reliability_bins(probs.max(axis=1), probs.argmax(axis=1) == labels, num_bins).ece


# ----------------------------------------------------------------------------- summaries

def long_tail_metrics(labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray | None,
                      class_counts: Sequence[int], many_threshold: int, few_threshold: int,
                      num_bins: int = 15) -> dict[str, float | int]:
    """top1, balanced_accuracy, {group}_accuracy (NaN if empty), macro_f1, ece, num_{group} (classes), num_samples."""
    counts = _class_counts(class_counts)
    num_classes = counts.size
    labels, predicted = _predictions(labels, predicted, num_classes)
    _check_bins(num_bins)
    ece = math.nan
    if probabilities is not None:
        ece = _ece(_probabilities(probabilities, labels.size, num_classes), labels, num_bins)
    groups = np.asarray(group_of(counts, many_threshold, few_threshold))
    stats = _ClassCounts.of(labels, predicted, num_classes)
    recall = stats.recall()
    _, _, f1 = stats.precision_recall_f1()
    metrics: dict[str, float | int] = {
        "top1": float(np.mean(labels == predicted)),
        "balanced_accuracy": _mean_or_nan(recall),
    }
    for group in GROUPS:
        metrics[f"{group}_accuracy"] = _mean_or_nan(recall[groups == group])
    metrics["macro_f1"] = float(f1.mean())
    metrics["ece"] = ece
    for group in GROUPS:
        metrics[f"num_{group}"] = int(np.sum(groups == group))
    metrics["num_samples"] = int(labels.size)
    return metrics


def per_class_table(labels: np.ndarray, predicted: np.ndarray, class_counts: Sequence[int],
                    class_names: Sequence[str] | None, many_threshold: int,
                    few_threshold: int) -> list[dict[str, object]]:
    """Per class: index, name, train_count, group, support, accuracy, precision, recall, f1 (module conventions)."""
    counts = _class_counts(class_counts)
    num_classes = counts.size
    names = [str(c) for c in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    labels, predicted = _predictions(labels, predicted, num_classes)
    groups = group_of(counts, many_threshold, few_threshold)
    stats = _ClassCounts.of(labels, predicted, num_classes)
    accuracy = stats.recall()
    precision, recall, f1 = stats.precision_recall_f1()
    return [{"index": c, "name": names[c], "train_count": int(counts[c]), "group": groups[c],
             "support": int(stats.support[c]), "accuracy": float(accuracy[c]),
             "precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c])}
            for c in range(num_classes)]
