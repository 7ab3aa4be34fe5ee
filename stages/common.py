"""What every stage shares: params loading and the error boundary of a command."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from pipeline.config import ConfigError
from pipeline.data.errors import DataError


def load_params(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def run_stage(body: Callable[[], str]) -> int:
    """Run a stage body that returns its one-line summary; bad input exits 2 with one message."""
    try:
        summary = body()
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0
