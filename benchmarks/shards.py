"""Shard writing throughput (images/s) of the prepare stage, for an array source (CIFAR-100 tarball:
PNG encoding) and a file source (an image folder: original bytes kept, decodability checked).

    python -m benchmarks.shards [--small] [--out FILE]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import parser, report, write_cifar100_raw, write_imagefolder_raw
from pipeline.data.config import PrepareConfig
from pipeline.data.prepare import prepare


def measure(raw: Path, out: Path) -> dict:
    started = time.perf_counter()
    summary = prepare(PrepareConfig(shard_max_samples=1000), raw, out)
    seconds = time.perf_counter() - started
    images = sum(summary.counts.values())
    return {"images": images, "shards": summary.num_shards, "mb": round(summary.total_bytes / 1e6, 2),
            "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    train, test = (400, 100) if args.small else (10_000, 2_000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw = write_cifar100_raw(work / "cifar-raw", train, test)
        rows.append({"source": "array (cifar100 tarball -> PNG)", **measure(raw, work / "cifar-prepared")})
        raw = write_imagefolder_raw(work / "folder-raw", work / "folder", train, test)
        rows.append({"source": "file (imagefolder PNG files)", **measure(raw, work / "folder-prepared")})
    report("shards", {"train": train, "test": test, "image": "32x32 RGB"}, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
