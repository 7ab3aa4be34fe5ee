"""What the data stages hand the stages after them, typed, each with one writer and one reader:
the split statistics (split -> training, tuning, the report) and the verified shard lists per role
(split -> training and tuning; prepare -> evaluate)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigError, from_mapping
from pipeline.data.errors import DataError
from pipeline.data.manifest import MANIFEST_FILE, read_manifest
from pipeline.data.verify import verify_shards
from pipeline.io import write_json
from pipeline.storage import absolute, exists, join, open_binary

STATS_FILE = "stats.json"  # in the split directory, beside its manifest
_VERIFIED_COLUMNS = ["key", "label", "shard", "size", "sha256"]


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


@dataclass(frozen=True)
class SplitShards:
    """The split stage's shards per role: absolute paths or URLs, checked against its manifest."""

    train: tuple[str, ...]
    val: tuple[str, ...]


@dataclass(frozen=True)
class SplitOutput:
    """What the split stage hands training and tuning."""

    stats: SplitStats
    shards: SplitShards


def read_split(split_dir: str | Path) -> SplitOutput:
    """The split stage's output at `split_dir` (a path, made absolute, or an fsspec URL on shared
    storage); every shard is checked against the manifest first (pipeline.data.verify), before any
    Ray worker reads one."""
    split_dir = absolute(split_dir)
    stats_path = join(split_dir, STATS_FILE)
    if not exists(stats_path):
        raise DataError(f"{stats_path} not found; run the split stage (dvc repro split) first")
    with open_binary(stats_path) as handle:
        stats = parse_split_stats(handle.read(), stats_path)
    shards = _verified_shards(split_dir, "role", ("train", "val"), "split shards")
    return SplitOutput(stats, SplitShards(train=shards["train"], val=shards["val"]))


def read_test_shards(prepared_dir: str | Path) -> tuple[str, ...]:
    """The prepare stage's test shards (absolute), checked against its manifest."""
    return _verified_shards(str(Path(prepared_dir).resolve()), "split", ("test",), "test shards")["test"]


def _verified_shards(directory: str, column: str, roles: tuple[str, ...], what: str) -> dict[str, tuple[str, ...]]:
    """Per role (the manifest's `column`), the sorted shards holding its rows; those rows' shards
    are verified against the manifest."""
    manifest_path = join(directory, MANIFEST_FILE)
    with open_binary(manifest_path) as handle:
        manifest = read_manifest(handle, [*_VERIFIED_COLUMNS, column], manifest_path)
    rows = [row for row in manifest if row[column] in roles]
    verify_shards(rows, directory, what)
    return {role: tuple(sorted({join(directory, r["shard"]) for r in rows if r[column] == role})) for role in roles}
