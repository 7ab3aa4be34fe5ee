"""What a DVC stage needs on a cluster: its command, the data it reads, the files it writes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.config import ConfigError


@dataclass(frozen=True)
class StageSpec:
    """One stage of dvc.yaml: `cmd`, the deps that are other stages' outputs or lie inside one (data
    the working-dir upload leaves out, so they travel through shared storage: `runs/tune/
    best_params.yaml`, the sweep's values, as much as `data/split`), and every path it writes."""

    name: str
    cmd: str
    data_deps: tuple[str, ...]
    outs: tuple[str, ...]  # outs, metrics and plots, as declared


def _paths(entries) -> list[str]:
    """Paths of a dvc.yaml list whose items are `path` or `{path: {options}}`."""
    return [next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in entries or []]


def _inside(path: str, outs: set[str]) -> bool:
    parts = Path(path).parts
    return any(parts[:len(Path(out).parts)] == Path(out).parts for out in outs)


def stage_spec(dvc_yaml: str | Path, name: str) -> StageSpec:
    stages = (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("stages", {})
    if name not in stages:
        raise ConfigError(f"{dvc_yaml}: no stage {name!r}; stages: {', '.join(stages)}")
    produced = {path for stage in stages.values() for path in _paths(stage.get("outs"))}
    stage = stages[name]
    if not isinstance(stage.get("cmd"), str):
        raise ConfigError(f"{dvc_yaml}: stage {name!r} needs a single cmd string to run on a cluster")
    return StageSpec(name=name, cmd=stage["cmd"],
                     data_deps=tuple(d for d in _paths(stage.get("deps")) if _inside(d, produced)),
                     outs=tuple(_paths(stage.get("outs")) + _paths(stage.get("metrics")) + _paths(stage.get("plots"))))
