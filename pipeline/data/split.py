"""The split stage: prepared shards -> long-tailed training shards (shuffled), validation shards,
a manifest, split statistics (DVC metrics) and a class-count table (DVC plot)."""
from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.data.config import SplitConfig
from pipeline.data.errors import DataError
from pipeline.data.longtail import assign_groups, carve_validation, select_longtail, target_counts
from pipeline.data.prepare import MANIFEST_SCHEMA
from pipeline.data.shards import MemberReader, MemberRef, ShardSetWriter, index_shard
from pipeline.io import atomic_dir, atomic_file, write_json

SPLIT_MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("label", pa.int32()),
    ("class_name", pa.string()),
    ("role", pa.string()),  # train | val
    ("shard", pa.string()),  # relative to the split directory, e.g. train/shard-000000.tar
    ("ext", pa.string()),
    ("size", pa.int64()),
    ("sha256", pa.string()),
])


@dataclass(frozen=True)
class SplitSummary:
    stats: dict
    seconds: float

    def line(self) -> str:
        s = self.stats
        g = s["group_sizes"]
        return (f"split {s['profile']} rho={s['imbalance_ratio']:g}: train {s['train_total']:,} / "
                f"val {s['val_total']:,} / test {s['test_total']:,}; classes many/medium/few "
                f"{g['many']}/{g['medium']}/{g['few']} in {self.seconds:.1f} s")


def _copy_rows(rows: np.ndarray, role: str, table: pa.Table, refs: dict[str, MemberRef],
               out: Path, max_samples: int, columns: dict[str, list]) -> None:
    """Re-write manifest `rows` (in the given order) into `out/role/` shards, checking each hash."""
    keys = table["key"].to_numpy(zero_copy_only=False)
    shards = table["shard"].to_numpy(zero_copy_only=False)
    sha = table["sha256"].to_numpy(zero_copy_only=False)
    labels = table["label"].to_numpy()
    names = table["class_name"].to_numpy(zero_copy_only=False)
    writer = ShardSetWriter(out / role, max_samples, max_bytes=1 << 62)
    reader = MemberReader()
    try:
        for row in tqdm(rows, desc=f"split {role}", unit="img", mininterval=1.0):
            ref = refs.get(keys[row])
            if ref is None:
                raise DataError(f"{shards[row]}: sample {keys[row]} listed in the manifest is missing")
            data = reader.read(ref)
            if hashlib.sha256(data).hexdigest() != sha[row]:
                raise DataError(f"{ref.shard}: sample {keys[row]} does not match its manifest hash; "
                                "rerun the prepare stage")
            shard = writer.write(keys[row], int(labels[row]), ref.ext, data)
            for name, value in (("key", keys[row]), ("label", int(labels[row])),
                                ("class_name", names[row]), ("role", role),
                                ("shard", f"{role}/{shard}"), ("ext", ref.ext), ("size", len(data)),
                                ("sha256", sha[row])):
                columns[name].append(value)
    finally:
        reader.close()
        writer.close()


def build_split(cfg: SplitConfig, prepared_dir: str | Path, out_dir: str | Path,
                stats_path: str | Path, class_counts_path: str | Path) -> SplitSummary:
    """Write the long-tailed split of METHODS.md from the prepare stage's output.

    `out_dir` gets train/ and val/ shards and manifest.parquet; the statistics
    (a DVC metrics file) and the per-class table (a DVC plot) go to their own
    paths, outside `out_dir`, since DVC outputs must not overlap.
    """
    start = time.perf_counter()
    prepared = Path(prepared_dir)
    table = pq.read_table(prepared / "manifest.parquet", schema=MANIFEST_SCHEMA)
    names = json.loads((prepared / "classes.json").read_text())["names"]
    num_classes = len(names)
    split_of = table["split"].to_numpy(zero_copy_only=False)
    labels = table["label"].to_numpy()
    train_rows = np.flatnonzero(split_of == "train")

    if cfg.val_source == "carve":
        try:
            val_idx, pool_idx = carve_validation(labels[train_rows], cfg.val_per_class, num_classes, cfg.seed)
        except ValueError as exc:
            raise DataError(f"split.val_per_class: {exc}") from exc
        val_rows, pool_rows = train_rows[val_idx], train_rows[pool_idx]
    else:
        val_rows, pool_rows = np.flatnonzero(split_of == "val"), train_rows
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
    stats = {
        "profile": cfg.profile,
        "imbalance_ratio": float(train_counts.max() / max(train_counts.min(), 1)),
        "requested_imbalance_ratio": cfg.imbalance_ratio,
        "n_max": int(train_counts.max()),
        "seed": cfg.seed,
        "num_classes": num_classes,
        "train_total": int(train_counts.sum()),
        "val_total": int(val_counts.sum()),
        "test_total": int((split_of == "test").sum()),
        "thresholds": {"many_above": cfg.many_threshold, "few_below": cfg.few_threshold},
        "group_sizes": {g: groups.count(g) for g in ("many", "medium", "few")},
        "class_counts": {name: int(n) for name, n in zip(names, train_counts)},
        "class_groups": dict(zip(names, groups)),
    }

    shard_of = table["shard"].to_numpy(zero_copy_only=False)
    refs: dict[str, MemberRef] = {}
    for shard in sorted(set(shard_of[train_order]) | set(shard_of[val_rows])):
        refs.update(index_shard(prepared / shard))
    columns: dict[str, list] = {field.name: [] for field in SPLIT_MANIFEST_SCHEMA}
    with atomic_dir(out_dir) as tmp:
        _copy_rows(train_order, "train", table, refs, tmp, cfg.shard_max_samples, columns)
        if len(val_rows):
            _copy_rows(val_rows, "val", table, refs, tmp, cfg.shard_max_samples, columns)
        pq.write_table(pa.table(columns, schema=SPLIT_MANIFEST_SCHEMA), tmp / "manifest.parquet")
        write_json(tmp / "stats.json", stats)
    write_json(stats_path, stats)
    with atomic_file(class_counts_path, "w") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(["class_index", "class_name", "train_count", "val_count", "group"])
        for c, name in enumerate(names):
            out.writerow([c, name, int(train_counts[c]), int(val_counts[c]), groups[c]])
    return SplitSummary(stats, time.perf_counter() - start)
