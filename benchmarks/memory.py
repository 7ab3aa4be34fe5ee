"""Peak host memory (RSS) of the prepare and split stages on two dataset sizes: does it grow with the data?

Each stage runs in a fresh child process that reports its own peak RSS
(VmHWM), next to a child that only imports the same modules (the floor).

    python -m benchmarks.memory [--small] [--out FILE]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import parser, peak_rss_mb, report, run_child, write_cifar100_raw
from pipeline.data.config import PrepareConfig, SplitConfig
from pipeline.data.prepare import prepare
from pipeline.data.split import build_split


def child(stage: str, source: str, out: str) -> None:
    """Run one stage (or nothing: 'imports') and print its peak RSS as JSON."""
    if stage == "prepare":
        prepare(PrepareConfig(shard_max_samples=1000), source, out)
    elif stage == "split":
        cfg = SplitConfig(profile="none", val_per_class=1)  # keep every image: the most to copy
        build_split(cfg, source, out, Path(out).with_suffix(".stats.json"), Path(out).with_suffix(".csv"))
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
        return 0
    args = parser(__doc__).parse_args(argv)
    sizes = (500, 2_000) if args.small else (5_000, 25_000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        floor = run_child("benchmarks.memory", ["imports", "-", "-"])["peak_rss_mb"]
        for train in sizes:
            raw = write_cifar100_raw(work / f"raw-{train}", train, train // 5)
            prepared, split = work / f"prepared-{train}", work / f"split-{train}"
            for stage, source, out in (("prepare", raw, prepared), ("split", prepared, split)):
                peak = run_child("benchmarks.memory", [stage, str(source), str(out)])["peak_rss_mb"]
                rows.append({"stage": stage, "train_images": train, "total_images": train + train // 5,
                             "peak_rss_mb": peak, "above_imports_mb": round(peak - floor, 1)})
    for stage in ("prepare", "split"):
        small, large = (row for row in rows if row["stage"] == stage)
        rows.append({"stage": f"{stage} growth", "train_images": large["train_images"] - small["train_images"],
                     "peak_rss_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1),
                     "kb_per_image": round(1024 * (large["peak_rss_mb"] - small["peak_rss_mb"])
                                           / (large["total_images"] - small["total_images"]), 2)})
    report("memory", {"sizes": list(sizes), "imports_peak_rss_mb": floor, "image": "32x32 RGB"}, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
