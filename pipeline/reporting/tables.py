"""The leaderboard: runs grouped by everything but the seed, mean and sample std over seeds,
the best mean of each metric column marked."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.reporting.records import RunLabel, RunRecord

# (metrics key, column title, True when higher is better)
METRIC_COLUMNS = (
    ("top1", "top-1", True),
    ("balanced_accuracy", "balanced", True),
    ("many_accuracy", "many", True),
    ("medium_accuracy", "medium", True),
    ("few_accuracy", "few", True),
    ("macro_f1", "macro-F1", True),
    ("ece", "ECE", False),
)


@dataclass(frozen=True)
class Cell:
    """Mean and sample standard deviation (ddof=1; NaN with one seed) of a metric over a group's runs."""

    mean: float
    std: float
    best: bool = False


@dataclass(frozen=True)
class LeaderboardRow:
    label: RunLabel  # the first run's label; seed differs within the row
    runs: tuple[str, ...]
    seeds: tuple[str, ...]
    cells: dict[str, Cell]


def _value(metric: float | None) -> float:
    return math.nan if metric is None else float(metric)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean over the non-NaN values (NaN if none); sample std (ddof=1), NaN below two values."""
    kept = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if kept.size == 0:
        return math.nan, math.nan
    return float(kept.mean()), float(kept.std(ddof=1)) if kept.size > 1 else math.nan


def leaderboard(records: list[RunRecord]) -> list[LeaderboardRow]:
    """One row per configuration (seed left out), sorted by balanced accuracy, best first."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.label.group_key, []).append(record)
    rows = []
    for members in groups.values():
        cells = {key: Cell(*mean_std([_value(r.metrics.get(key)) for r in members]))
                 for key, _, _ in METRIC_COLUMNS}
        rows.append(LeaderboardRow(label=members[0].label, runs=tuple(r.name for r in members),
                                   seeds=tuple(r.label.seed for r in members), cells=cells))
    rows.sort(key=lambda row: -np.nan_to_num(row.cells["balanced_accuracy"].mean, nan=-1.0))
    return mark_best(rows)


def mark_best(rows: list[LeaderboardRow]) -> list[LeaderboardRow]:
    """Mark, per metric column, every row whose mean equals the column's best (ties all marked); a single
    configuration is compared with nothing, so nothing is marked."""
    if len(rows) < 2:
        return rows
    best = {}
    for key, _, higher in METRIC_COLUMNS:
        means = [row.cells[key].mean for row in rows if not math.isnan(row.cells[key].mean)]
        best[key] = (max(means) if higher else min(means)) if means else math.nan
    return [LeaderboardRow(row.label, row.runs, row.seeds,
                           {key: Cell(c.mean, c.std, c.mean == best[key]) for key, c in row.cells.items()})
            for row in rows]


def format_cell(cell: Cell) -> str:
    """Percent with two decimals, '± std' when several seeds exist, '-' for NaN."""
    if math.isnan(cell.mean):
        return "-"
    text = f"{100 * cell.mean:.2f}"
    return text if math.isnan(cell.std) else f"{text} ± {100 * cell.std:.2f}"


def best_run(records: list[RunRecord]) -> RunRecord:
    """The run with the highest balanced accuracy (the confusion matrix and reliability diagram show it)."""
    return max(records, key=lambda r: _value(r.metrics.get("balanced_accuracy")) if
               r.metrics.get("balanced_accuracy") is not None else -1.0)
