"""DVC stage `split`: the long-tailed training split, validation carve-out, groups and statistics."""
from __future__ import annotations

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp split", __doc__)
    add_params(parser)
    parser.add_argument("--prepared", default=WORKSPACE.prepared, help="the prepare stage's folder")
    parser.add_argument("--out", default=WORKSPACE.split, help="folder for the long-tailed shards and manifest")
    parser.add_argument("--stats", default=WORKSPACE.split_stats, help="counts, groups and thresholds (JSON)")
    parser.add_argument("--class-counts", default=WORKSPACE.split_class_counts,
                        help="training images per class (CSV, a DVC plot)")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.data.config import SplitConfig
        from pipeline.data.split import build_split

        cfg = parse_section(SplitConfig, load_params(args.params), "split")
        return build_split(cfg, args.prepared, args.out, args.stats, args.class_counts).line()

    return run_stage(body, "split", [args.out, args.stats, args.class_counts])
