"""Where the report finds a run's files and the sweep's, in the workspace's layout (the workspace, a DVC
experiment and a kept run share it): what `ltp report` and `ltp keep` hand the library."""
from __future__ import annotations

from pipeline.reporting.records import RunFiles
from pipeline.reporting.sweep import SweepFiles
from stages.workspace import WORKSPACE

RUN_FILES = RunFiles(params=WORKSPACE.params, test_metrics=WORKSPACE.test_metrics, split_stats=WORKSPACE.split_stats,
                     job=WORKSPACE.stage2_job, per_class=WORKSPACE.per_class, confusion=WORKSPACE.confusion,
                     predictions=WORKSPACE.predictions, reliability=WORKSPACE.kept_reliability)
SWEEP_FILES = SweepFiles(summary=WORKSPACE.tune_summary, trials=WORKSPACE.tune_trials,
                         importances=WORKSPACE.tune_importances, history=WORKSPACE.tune_history)
