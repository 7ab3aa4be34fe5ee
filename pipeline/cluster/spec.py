"""What a DVC stage needs on a cluster: its command, the data it reads, the files it writes. The app
reads them from dvc.yaml (stages/dvcfile.py) and hands them to `submit_stage`."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    """One stage: `cmd`, the deps that are other stages' outputs or lie inside one (data the working-dir
    upload leaves out, so they travel through shared storage: the sweep's best values as much as the
    split's shards), and every path it writes."""

    name: str
    cmd: str
    data_deps: tuple[str, ...]
    outs: tuple[str, ...]  # outs, metrics and plots, as declared
