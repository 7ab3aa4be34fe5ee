"""Evaluation: the long-tailed metrics of docs/methods.md, defined once (metrics.py)."""
from pipeline.evaluation.metrics import (
    GROUPS,
    ReliabilityBins,
    confusion_matrix,
    expected_calibration_error,
    group_of,
    long_tail_metrics,
    per_class_table,
    reliability_bins,
)

__all__ = [
    "GROUPS", "ReliabilityBins", "confusion_matrix", "expected_calibration_error", "group_of",
    "long_tail_metrics", "per_class_table", "reliability_bins",
]
