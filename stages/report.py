"""DVC stage `report`: every evaluated run (workspace, DVC experiments, kept runs) in one Markdown + HTML page."""
from __future__ import annotations

import argparse

from pipeline.config import parse_section
from pipeline.reporting.build import ReportConfig, build_report
from stages.common import load_params, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltp report", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".", help="the repository whose runs are gathered")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--reliability", default="metrics/reliability.csv")
    parser.add_argument("--confusion", default="metrics/test_confusion.csv")
    args = parser.parse_args(argv)

    def body() -> str:
        cfg = parse_section(ReportConfig, load_params(args.params), "report")
        return build_report(cfg, args.root, args.out, args.reliability, args.confusion).line()

    return run_stage(body, "report", [args.out, args.reliability, args.confusion])
