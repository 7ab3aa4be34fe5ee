"""The workspace's layout: every path the stages read and write, relative to the repository root.

dvc.yaml spells the same paths in its commands, deps and outs (tests/test_workspace.py checks that
they agree). The stages take their defaults from here and hand the library the paths it needs, so
nothing under pipeline/ knows where a file lies.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workspace:
    params: str = "params.yaml"
    stage_params: str = "runs/params"  # check: STAGE.json, the values each stage reads
    raw: str = "data/raw"
    prepared: str = "data/prepared"
    split: str = "data/split"
    split_stats: str = "metrics/split_stats.json"
    split_class_counts: str = "metrics/split_class_counts.csv"
    tune: str = "runs/tune"
    tune_trials: str = "runs/tune/trials.parquet"
    tuned: str = "runs/tune/best_params.yaml"  # the sweep's best values, which stage1 / stage2 take
    tune_summary: str = "metrics/tune.json"
    tune_history: str = "metrics/tune_history.csv"
    tune_importances: str = "metrics/tune_importances.csv"
    stage1: str = "runs/stage1"
    stage1_metrics: str = "metrics/stage1.json"
    stage1_history: str = "metrics/stage1_history.tsv"
    stage2: str = "runs/stage2"
    stage2_job: str = "runs/stage2/job.json"
    stage2_metrics: str = "metrics/stage2.json"
    stage2_history: str = "metrics/stage2_history.tsv"
    evaluation: str = "runs/evaluation"
    per_class: str = "runs/evaluation/per_class.csv"
    confusion: str = "runs/evaluation/confusion.csv"
    predictions: str = "runs/evaluation/predictions.parquet"
    kept_reliability: str = "runs/evaluation/reliability.json"  # a kept run's bins, kept instead of predictions
    test_metrics: str = "metrics/test.json"
    reports: str = "reports"
    reliability: str = "metrics/reliability.csv"
    test_confusion: str = "metrics/test_confusion.csv"

WORKSPACE = Workspace()
