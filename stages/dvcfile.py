"""dvc.yaml as the app reads it: each stage's command, deps and outs, and from them what `ltp submit`
hands the cluster code (pipeline/cluster)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.cluster.spec import StageSpec
from pipeline.config import ConfigError


@dataclass(frozen=True)
class DvcStage:
    name: str
    cmd: str | list[str] | None
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    metrics: tuple[str, ...]
    plots: tuple[str, ...]


def _paths(entries) -> tuple[str, ...]:
    """Paths of a dvc.yaml list whose items are `path` or `{path: {options}}`."""
    return tuple(next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in entries or [])


def read_stages(dvc_yaml: str | Path) -> dict[str, DvcStage]:
    stages = (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("stages", {})
    return {name: DvcStage(name=name, cmd=stage.get("cmd"), deps=_paths(stage.get("deps")),
                           outs=_paths(stage.get("outs")), metrics=_paths(stage.get("metrics")),
                           plots=_paths(stage.get("plots")))
            for name, stage in stages.items()}


def _inside(path: str, outs: set[str]) -> bool:
    parts = Path(path).parts
    return any(parts[:len(Path(out).parts)] == Path(out).parts for out in outs)


def stage_spec(dvc_yaml: str | Path, name: str) -> StageSpec:
    """Stage `name` of `dvc_yaml` as the cluster runs it; its data deps are the deps that are another
    stage's outs or lie inside one (`runs/tune/best_params.yaml` inside `runs/tune`)."""
    stages = read_stages(dvc_yaml)
    if name not in stages:
        raise ConfigError(f"{dvc_yaml}: no stage {name!r}; stages: {', '.join(stages)}")
    produced = {path for stage in stages.values() for path in stage.outs}
    stage = stages[name]
    if not isinstance(stage.cmd, str):
        raise ConfigError(f"{dvc_yaml}: stage {name!r} needs a single cmd string to run on a cluster")
    return StageSpec(name=name, cmd=stage.cmd, data_deps=tuple(d for d in stage.deps if _inside(d, produced)),
                     outs=stage.outs + stage.metrics + stage.plots)
