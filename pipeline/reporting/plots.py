"""The report's figures as PNG bytes (matplotlib, Agg: no display needed)."""
from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.data.split_stats import SplitStats  # noqa: E402
from pipeline.longtail.groups import GROUPS  # noqa: E402
from pipeline.longtail.metrics import ReliabilityBins  # noqa: E402
from pipeline.reporting.records import RunRecord  # noqa: E402
from pipeline.reporting.tables import LeaderboardRow  # noqa: E402

GROUP_COLOURS = {"many": "#1f77b4", "medium": "#ff7f0e", "few": "#d62728"}
DPI = 110


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def method_name(row: LeaderboardRow, with_dataset: bool = False) -> str:
    """A configuration as the tables name it: its runs, methods, knobs and epochs (stage 1 + stage 2)."""
    label = row.label
    name = (f"{', '.join(row.runs)}: {label.stage1} + {label.stage2}" + (f" ({label.params})" if label.params else "")
            + f", {label.epochs} epochs")
    return f"{label.dataset} rho={label.rho:g}, {name}" if with_dataset else name


def per_class_accuracy(rows: list[LeaderboardRow], records: list[RunRecord]) -> bytes:
    """Per-class test accuracy (mean over a row's seeds) against training count, log x, one series per row."""
    by_name = {r.name: r for r in records}
    several = len({(row.label.dataset, row.label.rho) for row in rows}) > 1
    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    for row in rows:
        members = [by_name[name] for name in row.runs]
        counts = np.array([c["train_count"] for c in members[0].per_class])
        accuracy = np.nanmean([[c["accuracy"] for c in m.per_class] for m in members], axis=0)
        order = np.argsort(counts)
        axis.plot(counts[order], 100 * accuracy[order], marker="o", ms=3, lw=1.2, label=method_name(row, several))
    axis.set_xscale("log")
    axis.set(xlabel="training images of the class (log scale)", ylabel="test accuracy (%)", ylim=(-2, 102),
             title="Per-class accuracy against training count")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def group_bars(rows: list[LeaderboardRow]) -> bytes:
    """Many / medium / few accuracy per row as grouped bars, error bars = std over seeds."""
    figure, axis = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / len(GROUPS)
    x = np.arange(len(rows))
    for i, group in enumerate(GROUPS):
        cells = [row.cells[f"{group}_accuracy"] for row in rows]
        means = [100 * c.mean if not math.isnan(c.mean) else 0.0 for c in cells]
        errors = [100 * c.std if not math.isnan(c.std) else 0.0 for c in cells]
        axis.bar(x + (i - 1) * width, means, width, yerr=errors if any(errors) else None, capsize=3, label=group,
                 color=GROUP_COLOURS[group])
    axis.set_xticks(x, [method_name(row) for row in rows], rotation=20, ha="right", fontsize=7)
    axis.set(ylabel="test accuracy (%)", ylim=(0, 105), title="Many / medium / few accuracy per method")
    axis.legend(fontsize=8, ncols=3)
    axis.grid(alpha=0.3, axis="y")
    return _png(figure)


def class_histogram(split: SplitStats) -> bytes:
    """The training split's class counts (largest first), coloured by group, with the group thresholds."""
    names = list(split.class_counts)
    counts = [split.class_counts[n] for n in names]
    groups = [split.class_groups[n] for n in names]
    order = np.argsort(counts)[::-1]
    figure, axis = plt.subplots(figsize=(7.5, 3.6))
    axis.bar(np.arange(len(order)), [counts[i] for i in order],
             color=[GROUP_COLOURS[groups[i]] for i in order], width=0.9)
    thresholds = split.thresholds
    axis.axhline(thresholds.many_above, ls="--", color="k", lw=1, label=f"many: > {thresholds.many_above}")
    axis.axhline(thresholds.few_below, ls=":", color="k", lw=1, label=f"few: < {thresholds.few_below}")
    if len(order) <= 30:
        axis.set_xticks(np.arange(len(order)), [names[i] for i in order], rotation=30, ha="right", fontsize=7)
    else:
        axis.set_xlabel("classes, largest first")
    axis.set_yscale("log")
    axis.set(ylabel="training images (log)",
             title=f"Training split: {split.profile} profile, rho = {split.imbalance_ratio}, "
                   f"{split.train_total:,} images")
    axis.legend(fontsize=8)
    return _png(figure)


def confused_classes(matrix: np.ndarray, max_classes: int) -> np.ndarray:
    """All classes when C <= max_classes; else the max_classes with most off-diagonal mass (row + column)."""
    if matrix.shape[0] <= max_classes:
        return np.arange(matrix.shape[0])
    off = matrix - np.diag(np.diag(matrix))
    mass = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-mass, kind="stable")[:max_classes])


def confusion(record: RunRecord, max_classes: int) -> bytes:
    """Row-normalised confusion matrix of `record` (recall on the diagonal), top classes by confusion."""
    matrix = record.confusion
    keep = confused_classes(matrix, max_classes)
    rows = matrix[keep].astype(np.float64)
    normalised = np.divide(rows, rows.sum(axis=1, keepdims=True), out=np.zeros_like(rows),
                           where=rows.sum(axis=1, keepdims=True) > 0)[:, keep]
    names = [record.per_class[i]["name"] for i in keep]
    size = min(9.0, 3.0 + 0.35 * len(keep))
    figure, axis = plt.subplots(figsize=(size + 1.2, size))
    image = axis.imshow(100 * normalised, cmap="Blues", vmin=0, vmax=100)
    axis.set_xticks(np.arange(len(keep)), names, rotation=60, ha="right", fontsize=7)
    axis.set_yticks(np.arange(len(keep)), names, fontsize=7)
    if len(keep) <= 15:
        for (i, j), value in np.ndenumerate(100 * normalised):
            axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6,
                      color="white" if value > 50 else "black")
    part = "" if len(keep) == matrix.shape[0] else f" ({len(keep)} most confused of {matrix.shape[0]} classes)"
    axis.set(xlabel="predicted", ylabel="true", title=f"Confusion, {record.name}{part}, % of the true class")
    figure.colorbar(image, ax=axis, fraction=0.046)
    return _png(figure)


def reliability(bins: ReliabilityBins, name: str) -> bytes:
    """Accuracy per confidence bin against the diagonal; the gap is what ECE averages."""
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = bins.edges[1] - bins.edges[0]
    filled = bins.count > 0
    axis.bar(centres[filled], bins.accuracy[filled], width * 0.95, color="#1f77b4", label="accuracy")
    over = filled & (bins.confidence > bins.accuracy)
    under = filled & (bins.confidence < bins.accuracy)
    # The gap in two styles: an under-confident bin's gap lies inside its accuracy bar, so it is hatched
    # rather than shaded (a shade there reads as a darker, unexplained bar).
    axis.bar(centres[over], bins.confidence[over] - bins.accuracy[over], width * 0.95, bottom=bins.accuracy[over],
             color="#d62728", alpha=0.35, label="gap: over-confident")
    axis.bar(centres[under], bins.accuracy[under] - bins.confidence[under], width * 0.95,
             bottom=bins.confidence[under], facecolor="none", edgecolor="#ff7f0e", hatch="///",
             label="gap: under-confident")
    axis.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated (accuracy = confidence)")
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy",
             title=f"Reliability, {name}: ECE {100 * bins.ece:.2f}%")
    axis.legend(fontsize=8, loc="upper left")
    return _png(figure)


def sweep_history(history: list[dict]) -> bytes:
    """Objective per trial and best so far."""
    figure, axis = plt.subplots(figsize=(6, 3.4))
    trials = np.arange(1, len(history) + 1)
    axis.plot(trials, [h["objective"] for h in history], "o", ms=4, label="trial")
    axis.plot(trials, [h["best_so_far"] for h in history], "-", label="best so far")
    axis.set(xlabel="trial", ylabel="validation objective", title="Sweep history")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _png(figure)


def sweep_importances(importances: list[tuple[str, float]]) -> bytes:
    """Parameter importances as horizontal bars."""
    figure, axis = plt.subplots(figsize=(6, 0.6 + 0.45 * len(importances)))
    names = [name for name, _ in importances][::-1]
    axis.barh(names, [value for _, value in importances][::-1], color="#2ca02c")
    axis.set(xlabel="importance", title="Parameter importances")
    return _png(figure)
