"""The leaderboard's grouping rule: a row pools only runs whose resolved config differs in the seed alone."""
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.reporting.records import directory_reader, load_run
from pipeline.reporting.tables import leaderboard
from stages.report_files import RUN_FILES

from test_report import write_run


def run_with(root: Path, seed: int, accuracy: float, **stage1) -> dict:
    """A complete run (test_report.write_run) whose stage-1 config also sets `stage1` (as job.json records it)."""
    metrics = write_run(root, "ce", seed, accuracy)
    job_path = root / "runs/stage2/job.json"
    job = json.loads(job_path.read_text())
    job["stage1"].update(stage1)
    job_path.write_text(json.dumps(job))
    return metrics


def runs(kept: Path) -> list:
    return [load_run(directory_reader(path), RUN_FILES, path.name, "kept") for path in sorted(kept.iterdir())]


def test_two_runs_differing_only_in_lr_are_two_rows(tmp_path):
    run_with(tmp_path / "kept/default", 0, 0.6, lr=0.1, weight_decay=5e-4)
    run_with(tmp_path / "kept/tuned", 0, 0.8, lr=0.0123, weight_decay=5e-4)
    rows = leaderboard(runs(tmp_path / "kept"))
    assert sorted(row.runs for row in rows) == [("default",), ("tuned",)]
    assert all(len(row.seeds) == 1 and np.isnan(row.cells["balanced_accuracy"].std) for row in rows)
    assert {row.label.params for row in rows} == {"", "s1.lr=0.0123"}  # the rows say how they differ


def test_two_seeds_of_one_config_are_one_row_with_mean_and_std(tmp_path):
    metrics = [run_with(tmp_path / f"kept/seed{seed}", seed, accuracy, lr=0.0123)
               for seed, accuracy in ((0, 0.6), (1, 0.8))]
    [row] = leaderboard(runs(tmp_path / "kept"))
    assert row.seeds == ("0", "1") and row.runs == ("seed0", "seed1")
    values = [m["balanced_accuracy"] for m in metrics]
    assert row.cells["balanced_accuracy"].mean == pytest.approx(np.mean(values))
    assert row.cells["balanced_accuracy"].std == pytest.approx(np.std(values, ddof=1))
