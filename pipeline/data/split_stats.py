"""The split statistics: written by the split stage (its directory and the DVC metrics file), read
by training and tuning (the Task's class counts and groups) and by the report."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigError, from_mapping
from pipeline.data.errors import DataError
from pipeline.io import write_json

STATS_FILE = "stats.json"  # in the split directory, beside its manifest


@dataclass(frozen=True)
class GroupThresholds:
    many_above: int  # many: more training images than this
    few_below: int  # few: fewer training images than this


@dataclass(frozen=True)
class SplitStats:
    """The split's statistics (a DVC metrics file too); class dicts are in label order."""

    profile: str
    imbalance_ratio: float  # as realised: largest / smallest training class
    requested_imbalance_ratio: float
    n_max: int
    seed: int
    num_classes: int
    train_total: int
    val_total: int
    test_total: int
    thresholds: GroupThresholds
    group_sizes: dict[str, int]  # group -> number of classes
    class_counts: dict[str, int]  # class name -> training images
    class_groups: dict[str, str]  # class name -> group

    def line(self) -> str:
        g = self.group_sizes
        return (f"split {self.profile} rho={self.imbalance_ratio:g}: train {self.train_total:,} / "
                f"val {self.val_total:,} / test {self.test_total:,}; classes many/medium/few "
                f"{g['many']}/{g['medium']}/{g['few']}")


def write_split_stats(path: str | Path, stats: SplitStats) -> None:
    write_json(path, dataclasses.asdict(stats))


def parse_split_stats(data: bytes | str, name: str | Path) -> SplitStats:
    """The statistics from the JSON text of file `name`; a malformed file raises DataError naming it."""
    try:
        return from_mapping(SplitStats, json.loads(data), "split stats")
    except (ValueError, ConfigError) as exc:
        raise DataError(f"{name}: {exc}; rerun the split stage") from exc
