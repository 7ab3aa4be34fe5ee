"""The sweep's results (tune stage outputs), when a sweep ran: summary, trials, importances, history."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

TUNE_SUMMARY = "metrics/tune.json"
TUNE_TRIALS = "runs/tune/trials.parquet"
TUNE_IMPORTANCES = "metrics/tune_importances.csv"
TUNE_HISTORY = "metrics/tune_history.csv"


@dataclass(frozen=True)
class Sweep:
    summary: dict
    trials: list[dict]  # completed first, by objective (best first)
    importances: list[tuple[str, float]]  # largest first
    history: list[dict]  # trial, objective, best_so_far


def _csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def load_sweep(root: str | Path) -> Sweep | None:
    """The sweep under `root`, or None when there is none (files absent, disabled, or no trials)."""
    root = Path(root)
    if not (root / TUNE_SUMMARY).is_file():
        return None
    summary = json.loads((root / TUNE_SUMMARY).read_text())
    if not summary.get("enabled") or not summary.get("num_trials"):
        return None
    trials = pq.read_table(root / TUNE_TRIALS).to_pylist() if (root / TUNE_TRIALS).is_file() else []
    objective = lambda t: -t["objective"] if t.get("objective") is not None and not math.isnan(t["objective"]) else math.inf  # noqa: E731
    trials.sort(key=lambda t: (t.get("status") != "completed", objective(t)))
    importances = sorted(((r["parameter"], float(r["importance"])) for r in _csv(root / TUNE_IMPORTANCES)),
                         key=lambda item: -item[1])
    history = [{"trial": r["trial"], "objective": float(r["objective"]), "best_so_far": float(r["best_so_far"])}
               for r in _csv(root / TUNE_HISTORY)]
    return Sweep(summary=summary, trials=trials, importances=importances, history=history)
