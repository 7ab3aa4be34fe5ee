"""The sweep's best values on top of params.yaml, for the stages that train (stage1, stage2)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import parse_section
from pipeline.tuning.config import TuneConfig
from pipeline.tuning.run import apply_overlay
from stages.common import read_yaml


def with_tuned(params: dict[str, Any], section: str, tuned: str | Path) -> dict[str, Any]:
    """`params` with a sweep's best values for `section` (the file `tuned`, written by the tune stage)
    applied when `tune.apply` is true (the default) and the file exists."""
    tuned = Path(tuned)
    if not (parse_section(TuneConfig, params, "tune").apply and tuned.is_file()):
        return params
    best = read_yaml(tuned) or {}
    if best.get(section):
        print(f"{section}: with the sweep's best values from {tuned}: {best[section]}", flush=True)
    return {**params, section: apply_overlay(params, best, section)}
