"""DVC stage `split`: the long-tailed training split, validation carve-out, groups and statistics."""
from __future__ import annotations

import argparse

from pipeline.config import parse_section
from pipeline.data.config import SplitConfig
from pipeline.data.split import build_split
from stages.common import load_params, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltp split", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/split")
    parser.add_argument("--stats", default="metrics/split_stats.json")
    parser.add_argument("--class-counts", default="metrics/split_class_counts.csv")
    args = parser.parse_args(argv)

    def body() -> str:
        cfg = parse_section(SplitConfig, load_params(args.params), "split")
        return build_split(cfg, args.prepared, args.out, args.stats, args.class_counts).line()

    return run_stage(body, "split", [args.out, args.stats, args.class_counts])
