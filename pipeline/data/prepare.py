"""The prepare stage: a raw dataset -> WebDataset shards per split + a Parquet manifest + classes.json."""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from pipeline.data.config import SPLITS, PrepareConfig
from pipeline.data.errors import DataError
from pipeline.data.shards import ShardSetWriter
from pipeline.data.sources import SOURCES, RawSample
from pipeline.io import atomic_dir, write_json

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("label", pa.int32()),
    ("class_name", pa.string()),
    ("split", pa.string()),
    ("shard", pa.string()),  # relative to the prepared directory, e.g. train/shard-000000.tar
    ("ext", pa.string()),
    ("size", pa.int64()),  # bytes of the encoded image
    ("sha256", pa.string()),  # of the encoded image bytes
    ("source", pa.string()),  # original relative path, or file:index for array sources
])


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


def is_decodable(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        return True
    except Exception:  # PIL raises many types for damaged files
        return False


def _check_label(sample: RawSample, num_classes: int, split: str) -> None:
    if not 0 <= sample.label < num_classes:
        raise DataError(f"{split} image {sample.source}: label {sample.label} is outside "
                        f"0..{num_classes - 1} ({num_classes} classes)")


def prepare(cfg: PrepareConfig, raw_dir: str | Path, out_dir: str | Path) -> PrepareSummary:
    """Write `out_dir/{split}/shard-*.tar`, `manifest.parquet`, `classes.json`, `summary.json`."""
    start = time.perf_counter()
    raw_dir = Path(raw_dir)
    info = json.loads((raw_dir / "source.json").read_text())
    source = SOURCES.get(info["source"])(info, raw_dir)
    names = source.class_names
    columns: dict[str, list] = {field.name: [] for field in MANIFEST_SCHEMA}
    counts, skipped, num_shards = {}, 0, 0
    with atomic_dir(out_dir) as tmp:
        for split in (s for s in SPLITS if s in source.counts):
            writer = ShardSetWriter(tmp / split, cfg.shard_max_samples, cfg.shard_max_bytes)
            kept = 0
            samples = tqdm(source.read(split), total=source.counts[split], desc=f"prepare {split}",
                           unit="img", mininterval=1.0)
            for index, sample in enumerate(samples):
                _check_label(sample, len(names), split)
                if sample.is_file and not is_decodable(sample.data):
                    if cfg.on_corrupt == "error":
                        raise DataError(f"{info.get('origin', raw_dir)}/{sample.source}: corrupt image "
                                        "(set prepare.on_corrupt: skip to skip and count such files)")
                    skipped += 1
                    continue
                key = f"{split}_{index:08d}"
                shard = writer.write(key, sample.label, sample.ext, sample.data)
                for name, value in (("key", key), ("label", sample.label),
                                    ("class_name", names[sample.label]), ("split", split),
                                    ("shard", f"{split}/{shard}"), ("ext", sample.ext),
                                    ("size", len(sample.data)),
                                    ("sha256", hashlib.sha256(sample.data).hexdigest()),
                                    ("source", sample.source)):
                    columns[name].append(value)
                kept += 1
            writer.close()
            counts[split] = kept
            num_shards += writer.num_shards
            if split == "train":
                present = set(columns["label"])
                empty = [names[c] for c in range(len(names)) if c not in present]
                if empty:
                    raise DataError(f"class {empty[0]!r} has no training images "
                                    f"({len(empty)} empty class(es) of {len(names)})")
        pq.write_table(pa.table(columns, schema=MANIFEST_SCHEMA), tmp / "manifest.parquet")
        write_json(tmp / "classes.json", {"dataset": info["dataset"], "names": names})
        summary = PrepareSummary(info["dataset"], counts, num_shards, sum(columns["size"]), skipped,
                                 time.perf_counter() - start)
        write_json(tmp / "summary.json", {"counts": counts, "num_shards": num_shards,
                                          "total_bytes": summary.total_bytes,
                                          "skipped_corrupt": skipped})
    return summary
