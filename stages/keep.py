"""`ltp keep NAME`: save the workspace's evaluated run (its small files) as report.kept_runs/NAME."""
from __future__ import annotations

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp keep", __doc__)
    parser.add_argument("name", help="folder name of the kept run")
    add_params(parser)
    parser.add_argument("--root", default=".", help="the workspace whose evaluated run is kept")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.reporting.config import ReportConfig
        from pipeline.reporting.records import keep_run
        from stages.report_files import RUN_FILES

        cfg = parse_section(ReportConfig, load_params(args.params), "report")
        target = keep_run(args.root, RUN_FILES, cfg.kept_runs, args.name)
        return f"keep: the evaluated run is kept as {target} (the report lists it as {args.name!r})"

    return run_stage(body)
