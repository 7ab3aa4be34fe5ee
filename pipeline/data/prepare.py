"""The prepare stage: a raw dataset -> WebDataset shards per split + a Parquet manifest + classes.json."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.data.config import SPLITS, PrepareConfig
from pipeline.data.decode import decode_image
from pipeline.data.errors import DataError
from pipeline.data.manifest import MANIFEST_FILE, PREPARED_SCHEMA, ManifestWriter
from pipeline.data.shards import ShardSetWriter
from pipeline.data.sources import SOURCES, RawSample
from pipeline.io import atomic_dir, write_json


@dataclass(frozen=True)
class PrepareSummary:
    dataset: str
    counts: dict[str, int]
    num_shards: int
    total_bytes: int
    skipped_corrupt: int
    seconds: float

    def line(self) -> str:
        splits = ", ".join(f"{s} {n:,}" for s, n in self.counts.items())
        skipped = f", {self.skipped_corrupt} corrupt skipped" if self.skipped_corrupt else ""
        return (f"prepared {self.dataset}: {splits} images in {self.num_shards} shards "
                f"({self.total_bytes / 1e6:.1f} MB){skipped} in {self.seconds:.1f} s")


def decode_problem(data: bytes, channels: int) -> str | None:
    """Why training could not decode `data` as `channels` channels (its own decode), or None."""
    try:
        decode_image(data, channels)
    except ValueError as exc:
        return str(exc)
    return None


def _check_label(sample: RawSample, num_classes: int, split: str) -> None:
    if not 0 <= sample.label < num_classes:
        raise DataError(f"{split} image {sample.source}: label {sample.label} is outside "
                        f"0..{num_classes - 1} ({num_classes} classes)")


def prepare(cfg: PrepareConfig, raw_dir: str | Path, out_dir: str | Path, channels: int = 1) -> PrepareSummary:
    """Write `out_dir/{split}/shard-*.tar`, the manifest, `classes.json`, `summary.json`.

    Every image is decoded as training will decode it (`channels`: params `model.channels`), so an
    image that training could not read is caught here (`cfg.on_corrupt`), never in a shard.

    Streams: one sample, the open shard and one manifest row group are in memory at a time (the
    sources read in chunks too), so peak memory does not grow with the dataset.
    """
    start = time.perf_counter()
    raw_dir = Path(raw_dir)
    info = json.loads((raw_dir / "source.json").read_text())
    source = SOURCES.get(info["source"])(info, raw_dir)
    names = source.class_names
    counts, skipped, num_shards, total_bytes = {}, 0, 0, 0
    with atomic_dir(out_dir) as tmp, ManifestWriter(tmp / MANIFEST_FILE, PREPARED_SCHEMA) as manifest:
        for split in (s for s in SPLITS if s in source.counts):
            writer = ShardSetWriter(tmp / split, cfg.shard_max_samples, cfg.shard_max_bytes)
            kept, present = 0, np.zeros(len(names), dtype=bool)
            samples = tqdm(source.read(split), total=source.counts[split], desc=f"prepare {split}",
                           unit="img", mininterval=1.0)
            for index, sample in enumerate(samples):
                _check_label(sample, len(names), split)
                problem = decode_problem(sample.data, channels)
                if problem is not None:
                    if cfg.on_corrupt == "error":
                        raise DataError(f"{info.get('origin', raw_dir)}/{sample.source}: corrupt image: {problem} "
                                        "(set prepare.on_corrupt: skip to skip and count such files)")
                    skipped += 1
                    continue
                key = f"{split}_{index:08d}"
                shard = writer.write(key, sample.label, sample.ext, sample.data)
                manifest.append(key, sample.label, names[sample.label], split, f"{split}/{shard}", sample.ext,
                                len(sample.data), hashlib.sha256(sample.data).hexdigest(), sample.source)
                present[sample.label] = True
                total_bytes += len(sample.data)
                kept += 1
            writer.close()
            counts[split] = kept
            num_shards += writer.num_shards
            if split == "train" and not present.all():
                empty = [names[c] for c in np.flatnonzero(~present)]
                raise DataError(f"class {empty[0]!r} has no training images "
                                f"({len(empty)} empty class(es) of {len(names)})")
        write_json(tmp / "classes.json", {"dataset": info["dataset"], "names": names})
        summary = PrepareSummary(info["dataset"], counts, num_shards, total_bytes, skipped,
                                 time.perf_counter() - start)
        write_json(tmp / "summary.json", {"counts": counts, "num_shards": num_shards,
                                          "total_bytes": summary.total_bytes,
                                          "skipped_corrupt": skipped})
    return summary
