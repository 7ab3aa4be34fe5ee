"""The sweep's results (tune stage outputs), when a sweep ran: summary, trials, importances, history."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq


@dataclass(frozen=True)
class SweepFiles:
    """Where the tune stage's files lie, relative to the root: the app's layout, handed in."""

    summary: str
    trials: str
    importances: str
    history: str


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


def load_sweep(root: str | Path, files: SweepFiles) -> Sweep | None:
    """The sweep's `files` under `root`, or None when there is none (files absent, disabled, or no trials)."""
    root = Path(root)
    if not (root / files.summary).is_file():
        return None
    summary = json.loads((root / files.summary).read_text())
    if not summary.get("enabled") or not summary.get("num_trials"):
        return None
    trials = pq.read_table(root / files.trials).to_pylist() if (root / files.trials).is_file() else []
    objective = lambda t: -t["objective"] if t.get("objective") is not None and not math.isnan(t["objective"]) else math.inf  # noqa: E731
    trials.sort(key=lambda t: (t.get("status") != "completed", objective(t)))
    importances = sorted(((r["parameter"], float(r["importance"])) for r in _csv(root / files.importances)),
                         key=lambda item: -item[1])
    history = [{"trial": r["trial"], "objective": float(r["objective"]), "best_so_far": float(r["best_so_far"])}
               for r in _csv(root / files.history)]
    return Sweep(summary=summary, trials=trials, importances=importances, history=history)
