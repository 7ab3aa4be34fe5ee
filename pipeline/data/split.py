"""The split stage: prepared shards -> long-tailed training shards (shuffled), validation shards,
a manifest, split statistics (DVC metrics) and a class-count table (DVC plot)."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from pipeline.data.config import SPLITS, SplitConfig
from pipeline.data.errors import DataError
from pipeline.data.manifest import MANIFEST_FILE, SPLIT_SCHEMA, ManifestWriter, manifest_errors, open_manifest
from pipeline.data.shards import MemberReader, MemberRef, ShardSetWriter, index_shard
from pipeline.data.split_stats import STATS_FILE, GroupThresholds, SplitStats, write_split_stats
from pipeline.io import atomic_dir, write_rows
from pipeline.longtail.groups import GROUPS, assign_groups
from pipeline.longtail.profiles import carve_validation, select_longtail, target_counts

_INDEX_COLUMNS = ["key", "label", "split", "shard"]
_VALUE_COLUMNS = ["key", "class_name", "shard", "ext", "sha256"]
# Manifest rows decoded at a time, and output rows gathered per pass over the manifest: what the
# stage holds of the manifest's strings, whatever the dataset size.
_BATCH_ROWS = 16_384


@dataclass(frozen=True)
class SplitSummary:
    stats: SplitStats
    seconds: float

    def line(self) -> str:
        return f"{self.stats.line()} in {self.seconds:.1f} s"


@dataclass(frozen=True)
class _Index:
    """Fixed-width arrays with one entry per prepared manifest row (21 bytes a row, no strings)."""

    labels: np.ndarray  # int32
    splits: np.ndarray  # int8: position in SPLITS
    offsets: np.ndarray  # int64: byte offset of the image inside its shard (-1: not located, test rows)
    sizes: np.ndarray  # int64: bytes of the image, from the shard's tar header

    def rows_of(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == SPLITS.index(split))


def _batches(manifest: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, list]]]:
    """(first row number, {column: values}) for consecutive batches of the manifest."""
    start = 0
    with manifest_errors(manifest):
        for batch in open_manifest(manifest).iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            yield start, batch.to_pydict()
            start += batch.num_rows


def _read_index(prepared: Path) -> _Index:
    """One streaming pass over the manifest; train and val images are located through their shards'
    tar headers, one shard at a time (the manifest lists each shard's rows together)."""
    manifest = prepared / MANIFEST_FILE
    rows = open_manifest(manifest).metadata.num_rows
    index = _Index(np.empty(rows, np.int32), np.empty(rows, np.int8), np.full(rows, -1, np.int64),
                   np.full(rows, -1, np.int64))
    shard, members = None, {}
    for start, batch in _batches(manifest, _INDEX_COLUMNS):
        for row, (key, label, split, row_shard) in enumerate(
                zip(batch["key"], batch["label"], batch["split"], batch["shard"]), start=start):
            if split not in SPLITS:
                raise DataError(f"{manifest}: unknown split {split!r} for {key}")
            index.labels[row], index.splits[row] = label, SPLITS.index(split)
            if split == "test":
                continue
            if row_shard != shard:
                shard, members = row_shard, index_shard(prepared / row_shard)
            ref = members.get(key)
            if ref is None:
                raise DataError(f"{row_shard}: sample {key} listed in the manifest is missing")
            index.offsets[row], index.sizes[row] = ref.offset, ref.size
    return index


def _gather(manifest: Path, rows: np.ndarray) -> dict[str, list]:
    """The string columns of manifest `rows`, in the given order, from one streaming pass."""
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    found: dict[str, list] = {column: [] for column in _VALUE_COLUMNS}
    for start, batch in _batches(manifest, _VALUE_COLUMNS):
        lo, hi = np.searchsorted(wanted, [start, start + len(batch["key"])])
        for column, values in batch.items():
            found[column] += [values[i] for i in wanted[lo:hi] - start]
        if hi == len(wanted):
            break
    position = np.empty_like(order)
    position[order] = np.arange(len(order))  # where each requested row sits among the sorted ones
    return {column: [values[i] for i in position] for column, values in found.items()}


def _copy_rows(prepared: Path, index: _Index, rows: np.ndarray, role: str, out: Path, max_samples: int,
               manifest: ManifestWriter) -> None:
    """Re-write manifest `rows` (in the given order) into `out/role/` shards, checking each hash;
    the manifest's strings are gathered `_BATCH_ROWS` rows at a time."""
    writer = ShardSetWriter(out / role, max_samples, max_bytes=1 << 62)
    reader = MemberReader()
    try:
        with tqdm(total=len(rows), desc=f"split {role}", unit="img", mininterval=1.0) as progress:
            for begin in range(0, len(rows), _BATCH_ROWS):
                chunk = rows[begin:begin + _BATCH_ROWS]
                values = _gather(prepared / MANIFEST_FILE, chunk)
                for row, key, name, shard, ext, sha in zip(chunk, values["key"], values["class_name"],
                                                            values["shard"], values["ext"], values["sha256"]):
                    data = reader.read(MemberRef(prepared / shard, ext, int(index.offsets[row]),
                                                 int(index.sizes[row])))
                    if hashlib.sha256(data).hexdigest() != sha:
                        raise DataError(f"{prepared / shard}: sample {key} does not match its manifest hash; "
                                        "rerun the prepare stage")
                    label = int(index.labels[row])
                    written = writer.write(key, label, ext, data)
                    manifest.append(key, label, name, role, f"{role}/{written}", ext, len(data), sha)
                progress.update(len(chunk))
    finally:
        reader.close()
        writer.close()


def build_split(cfg: SplitConfig, prepared_dir: str | Path, out_dir: str | Path,
                stats_path: str | Path, class_counts_path: str | Path) -> SplitSummary:
    """Write the long-tailed split (docs/methods.md) from the prepare stage's output.

    Streams: the stage holds a fixed-width index of the manifest (see _Index) and
    `_BATCH_ROWS` rows of its strings, never the images of more than one sample.

    `out_dir` gets train/ and val/ shards, the manifest and the statistics; the statistics
    (a DVC metrics file) and the per-class table (a DVC plot) go to their own
    paths, outside `out_dir`, since DVC outputs must not overlap.
    """
    start = time.perf_counter()
    prepared = Path(prepared_dir)
    index = _read_index(prepared)
    names = json.loads((prepared / "classes.json").read_text())["names"]
    num_classes = len(names)
    labels = index.labels
    train_rows = index.rows_of("train")

    if cfg.val_source == "carve":
        try:
            val_idx, pool_idx = carve_validation(labels[train_rows], cfg.val_per_class, num_classes, cfg.seed)
        except ValueError as exc:
            raise DataError(f"split.val_per_class: {exc}") from exc
        val_rows, pool_rows = train_rows[val_idx], train_rows[pool_idx]
    else:
        val_rows, pool_rows = index.rows_of("val"), train_rows
        if len(val_rows) == 0:
            raise DataError("split.val_source: the dataset has no validation split; use 'carve'")

    pool_counts = np.bincount(labels[pool_rows], minlength=num_classes)
    try:
        targets = target_counts(cfg.profile, pool_counts, cfg.n_max, cfg.imbalance_ratio)
    except ValueError as exc:
        raise DataError(f"split.n_max: {exc}") from exc
    selected = pool_rows[select_longtail(labels[pool_rows], targets, cfg.seed)]
    # A full random order, so a streaming reader sees mixed classes from the first shard on.
    train_order = selected[np.random.default_rng(cfg.seed).permutation(len(selected))]

    train_counts = np.bincount(labels[selected], minlength=num_classes)
    val_counts = np.bincount(labels[val_rows], minlength=num_classes)
    groups = assign_groups(train_counts, cfg.many_threshold, cfg.few_threshold)
    stats = SplitStats(
        profile=cfg.profile,
        imbalance_ratio=float(train_counts.max() / max(train_counts.min(), 1)),
        requested_imbalance_ratio=cfg.imbalance_ratio,
        n_max=int(train_counts.max()),
        seed=cfg.seed,
        num_classes=num_classes,
        train_total=int(train_counts.sum()),
        val_total=int(val_counts.sum()),
        test_total=len(index.rows_of("test")),
        thresholds=GroupThresholds(many_above=cfg.many_threshold, few_below=cfg.few_threshold),
        group_sizes={g: groups.count(g) for g in GROUPS},
        class_counts={name: int(n) for name, n in zip(names, train_counts)},
        class_groups=dict(zip(names, groups)),
    )

    with atomic_dir(out_dir) as tmp, ManifestWriter(tmp / MANIFEST_FILE, SPLIT_SCHEMA) as manifest:
        _copy_rows(prepared, index, train_order, "train", tmp, cfg.shard_max_samples, manifest)
        if len(val_rows):
            _copy_rows(prepared, index, val_rows, "val", tmp, cfg.shard_max_samples, manifest)
        write_split_stats(tmp / STATS_FILE, stats)
    write_split_stats(stats_path, stats)
    write_rows(class_counts_path, [
        {"class_index": c, "class_name": name, "train_count": int(train_counts[c]),
         "val_count": int(val_counts[c]), "group": groups[c]} for c, name in enumerate(names)],
        ["class_index", "class_name", "train_count", "val_count", "group"])
    return SplitSummary(stats, time.perf_counter() - start)
