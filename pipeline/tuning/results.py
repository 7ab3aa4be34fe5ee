"""From the trials of a sweep to its outputs: one row per trial, the best trial, its params overlay,
Optuna's parameter importances and the optimisation history. Pure functions (no Ray)."""
from __future__ import annotations

import math
from typing import Any, Sequence

from pipeline.tuning.sweep import TrialRecord
from pipeline.tuning.space import Dimension

STATUSES = ("completed", "stopped_early", "error")


def trial_rows(records: Sequence[TrialRecord], dims: Sequence[Dimension], metric: str,
               max_epochs: int, last_stage_from: int) -> list[dict[str, Any]]:
    """One row per trial: id, status, epochs trained, the objective at its last epoch and its best
    over the epochs of the last swept stage (epoch index >= `last_stage_from`), the sampled values
    and the last epoch's validation metrics."""
    rows = []
    for record in records:
        epochs = len(record.history)
        last = record.history[-1] if record.history else {}
        scored = [h[metric] for h in record.history[last_stage_from:] if _finite(h.get(metric))]
        if record.error is not None:
            status = "error"
        else:
            status = "completed" if epochs >= max_epochs else "stopped_early"
        row = {"trial_id": record.trial_id, "status": status, "epochs": epochs,
               "objective": last.get(metric) if scored else None,
               "best_objective": max(scored) if scored else None}
        row.update({dim.name: record.values[dim.name] for dim in dims})
        row.update({k: v for k, v in last.items() if k.startswith("val_") and _finite(v)})
        rows.append(row)
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def best_row(rows: Sequence[dict]) -> dict | None:
    """The trial with the highest best_objective (the first of equals); None when none scored."""
    scored = [r for r in rows if r["best_objective"] is not None]
    return max(scored, key=lambda r: r["best_objective"]) if scored else None


def history_rows(rows: Sequence[dict]) -> list[dict]:
    """Optimisation history in trial order: each trial's best objective and the best so far; trials
    numbered from 1 in creation order, as their keys are (trial 1: params.yaml's values when they
    lie in the space)."""
    out, best = [], -math.inf
    for number, row in enumerate(rows, start=1):
        if row["best_objective"] is None:
            continue
        best = max(best, row["best_objective"])
        out.append({"trial": number, "trial_id": row["trial_id"], "objective": row["best_objective"],
                    "best_so_far": best})
    return out


def importances(rows: Sequence[dict], dims: Sequence[Dimension], seed: int) -> dict[str, float]:
    """Optuna's fANOVA parameter importances of the scored trials (stopped-early ones count with the
    value they reached, as OptunaSearch told the study); {} with fewer than 3 scored trials."""
    import optuna

    scored = [r for r in rows if r["best_objective"] is not None]
    if len(scored) < 3:
        return {}
    distributions = {dim.name: (optuna.distributions.IntDistribution(int(dim.low), int(dim.high))
                                if dim.scale == "int" else
                                optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.scale == "log"))
                     for dim in dims}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for row in scored:
        study.add_trial(optuna.trial.create_trial(params={d: row[d] for d in distributions},
                                                  distributions=distributions, value=row["best_objective"]))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
