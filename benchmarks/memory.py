"""Peak host memory (RSS) of the prepare and split stages on three dataset sizes: does it grow with the data?

Two sources: IDX files (the default dataset's format; an array source) and an
imagefolder tree of PNG files (a file source, the format of the large
long-tailed datasets). Each stage runs in a fresh child process that reports
its own peak RSS (VmHWM), next to a child that only imports the same modules
(the floor). The split keeps every image (profile none) so it copies the most.

    python -m benchmarks.memory [--small] [--out FILE]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import parser, peak_rss_mb, report, run_child, write_idx_raw, write_imagefolder_raw
from pipeline.data.config import PrepareConfig, SplitConfig
from pipeline.data.prepare import prepare
from pipeline.data.split import build_split

SOURCES = {"idx": "array (IDX)", "files": "file (PNG tree)"}


def child(stage: str, source: str, out: str) -> None:
    """Run one stage (or nothing: 'imports') and print its peak RSS as JSON."""
    if stage == "prepare":
        prepare(PrepareConfig(shard_max_samples=1000), source, out)
    elif stage == "split":
        cfg = SplitConfig(profile="none", val_per_class=1)  # keep every image: the most to copy
        build_split(cfg, source, out, Path(out).with_suffix(".stats.json"), Path(out).with_suffix(".csv"))
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))


def _raw(kind: str, work: Path, train: int) -> Path:
    if kind == "idx":
        return write_idx_raw(work / "raw", train, train // 5)
    return write_imagefolder_raw(work / "raw", work / "tree", train, train // 5)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
        return 0
    args = parser(__doc__).parse_args(argv)
    sizes = (500, 1_000, 2_000) if args.small else (10_000, 50_000, 150_000)
    rows = []
    floor = run_child("benchmarks.memory", ["imports", "-", "-"])["peak_rss_mb"]
    for kind, label in SOURCES.items():
        measured = []
        for train in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                raw, prepared, split = _raw(kind, work, train), work / "prepared", work / "split"
                for stage, source, out in (("prepare", raw, prepared), ("split", prepared, split)):
                    peak = run_child("benchmarks.memory", [stage, str(source), str(out)])["peak_rss_mb"]
                    measured.append({"stage": stage, "source": label, "train_images": train,
                                     "total_images": train + train // 5, "peak_rss_mb": peak,
                                     "above_imports_mb": round(peak - floor, 1)})
        rows += measured
        for stage in ("prepare", "split"):
            runs = [row for row in measured if row["stage"] == stage]
            for small, large in zip(runs, runs[1:]):  # growth between consecutive sizes
                growth = large["peak_rss_mb"] - small["peak_rss_mb"]
                images = large["total_images"] - small["total_images"]
                rows.append({"stage": f"{stage} growth", "source": label,
                             "from_images": small["total_images"], "total_images": large["total_images"],
                             "peak_rss_mb": round(growth, 1), "kb_per_image": round(1024 * growth / images, 2)})
    report("memory", {"sizes": list(sizes), "imports_peak_rss_mb": floor,
                      "images": {"idx": "28x28 grey", "files": "32x32 RGB PNG"}}, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
