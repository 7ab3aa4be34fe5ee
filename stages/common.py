"""What every stage shares: params loading and the error boundary of a command."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline.config import ConfigError, parse_section
from pipeline.data.errors import DataError


def load_params(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def with_tuned(params: dict[str, Any], section: str, tuned: str | Path) -> dict[str, Any]:
    """`params` with a sweep's best values for `section` (the file `tuned`, written by the tune stage)
    applied when `tune.apply` is true (the default) and the file exists."""
    from pipeline.tuning.config import TuneConfig
    from pipeline.tuning.run import apply_overlay

    tuned = Path(tuned)
    if not (parse_section(TuneConfig, params, "tune").apply and tuned.is_file()):
        return params
    best = yaml.safe_load(tuned.read_text()) or {}
    if best.get(section):
        print(f"{section}: with the sweep's best values from {tuned}: {best[section]}", flush=True)
    return {**params, section: apply_overlay(params, best, section)}


def run_stage(body: Callable[[], str]) -> int:
    """Run a stage body that returns its one-line summary; bad input exits 2 with one message."""
    try:
        summary = body()
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0
