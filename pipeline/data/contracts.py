"""What the data stages hand the stages after them, read in one place: the split (its statistics and
its verified shard lists per role) for training and tuning, the prepared test shards for evaluation.
Their writers: pipeline.data.split (the split stage) and pipeline.data.prepare."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.data.errors import DataError
from pipeline.data.manifest import MANIFEST_FILE, read_manifest
from pipeline.data.split_stats import STATS_FILE, SplitStats, parse_split_stats
from pipeline.data.verify import verify_shards
from pipeline.storage import absolute, exists, join, open_binary

_VERIFIED_COLUMNS = ["key", "label", "shard", "size", "sha256"]


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
