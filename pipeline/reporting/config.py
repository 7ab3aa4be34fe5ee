"""Typed configuration of the report (params section `report`)."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import require


@dataclass(frozen=True)
class ReportConfig:
    """Params section `report`."""

    kept_runs: str = "kept_runs"  # folder of runs saved with `ltp keep NAME`
    experiments: bool = True  # include DVC experiments (read from their git refs)
    confusion_max_classes: int = 20  # larger C: show the most confused classes only

    def __post_init__(self) -> None:
        require(self.confusion_max_classes >= 2, "report.confusion_max_classes", "must be >= 2")
