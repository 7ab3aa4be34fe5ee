"""DVC stage `report`: every evaluated run (workspace, DVC experiments, kept runs) in one Markdown + HTML page."""
from __future__ import annotations

from stages.cli import add_params, stage_parser
from stages.common import load_params, run_stage
from stages.workspace import WORKSPACE


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ltp report", __doc__)
    add_params(parser)
    parser.add_argument("--root", default=".", help="the repository whose runs are gathered")
    parser.add_argument("--out", default=WORKSPACE.reports, help="folder for report.md, report.html and figures/")
    parser.add_argument("--reliability", default=WORKSPACE.reliability,
                        help="the workspace run's reliability bins (CSV, a DVC plot)")
    parser.add_argument("--confusion", default=WORKSPACE.test_confusion,
                        help="the workspace run's confusion pairs (CSV, a DVC plot)")
    args = parser.parse_args(argv)

    def body() -> str:
        from pipeline.config import parse_section
        from pipeline.reporting.build import build_report
        from pipeline.reporting.config import ReportConfig
        from stages.report_files import RUN_FILES, SWEEP_FILES

        cfg = parse_section(ReportConfig, load_params(args.params), "report")
        return build_report(cfg, args.root, RUN_FILES, SWEEP_FILES, args.out, args.reliability,
                            args.confusion).line()

    return run_stage(body, "report", [args.out, args.reliability, args.confusion])
